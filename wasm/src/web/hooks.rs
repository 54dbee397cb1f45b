//! What the JS host provides: a clock (`performance.now()`, `Date.now()`), the memory size, and
//! a panic hook that reports to `console.error`.

use std::sync::Arc;

use saguaro_engine::{Clock, Hooks};
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    // `performance` exists in browsers, workers and Node >= 16; `catch` keeps a missing one
    // from throwing through Rust frames.
    #[wasm_bindgen(catch, js_namespace = performance, js_name = now)]
    fn performance_now() -> Result<f64, JsValue>;

    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn console_error(message: &str);
}

/// Milliseconds from `performance.now()` (monotonic), else `Date.now()`; dates from `Date.now()`.
struct JsClock;

impl Clock for JsClock {
    fn now_ms(&self) -> f64 {
        performance_now().unwrap_or_else(|_| js_sys::Date::now())
    }

    fn unix_seconds(&self) -> Option<i64> {
        let ms = js_sys::Date::now();
        ms.is_finite().then(|| (ms / 1000.0).floor() as i64)
    }
}

/// Bytes of WebAssembly memory (what the instance holds; it never shrinks).
pub fn memory_bytes() -> f64 {
    core::arch::wasm32::memory_size::<0>() as f64 * 65536.0
}

/// The session hooks of a JS host: the JS clock, and the wasm memory size as `ram_usage_mb`.
pub fn js_hooks() -> Hooks {
    Hooks { clock: Some(Arc::new(JsClock)), ram_usage_mb: Some(Arc::new(|| memory_bytes() / (1024.0 * 1024.0))) }
}

/// Reports panics to `console.error` (the engine returns errors instead of panicking; this is
/// the last resort before the instance traps).
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        console_error(&format!("saguaro: internal error (panic): {info}"));
    }));
}
