//! Threads in browsers and Node: the npm package's threads build (compiled with the wasm
//! `atomics` feature, so its memory is a shared `WebAssembly.Memory`) runs a model's jobs on a
//! [`SpinPool`] whose workers are Web Workers (or Node `worker_threads`) instantiating the same
//! module on the same memory. The JS side (npm/src/threads.ts) drives it:
//!
//! 1. the model's thread calls `startThreads(n)`, which makes the pool and returns how many
//!    workers to start (n - 1);
//! 2. each worker gets `threadModule()` and `threadMemory()`, instantiates the glue with them and
//!    calls `threadWorkerRun()`, which serves jobs (it returns only if the pool ends);
//! 3. every model loaded afterwards computes on the pool (prefill and decode). The work split is
//!    the engine's, so results are bit-identical for every thread count.
//!
//! In the other builds (no `atomics`) these exports exist too, so all builds share one API:
//! `threadsSupported()` is false and `startThreads(n > 1)` is an error.
//!
//! wasm32 aborts on panic: a task that panicked on a worker would trap that worker and leave the
//! job unfinished. The engine's tasks do not panic on any input (model files are validated at
//! load; docs/design.md §Errors), which is what makes the pool safe to use here.

use wasm_bindgen::prelude::*;

/// Most threads a pool may have (each Web Worker holds a stack and an instance).
pub const MAX_THREADS: usize = 64;

/// True in the threads build (shared memory; `startThreads` can start workers).
#[wasm_bindgen(js_name = threadsSupported)]
pub fn threads_supported() -> bool {
    cfg!(target_feature = "atomics")
}

#[cfg(target_feature = "atomics")]
mod pool {
    use std::sync::{Arc, Mutex};

    use saguaro_engine::parallel::{Parallel, SpinPool, SpinWorker, Threads};
    use saguaro_engine::Error;

    /// Workers made by `startThreads`, waiting for a Web Worker to run them.
    static PENDING: Mutex<Vec<SpinWorker>> = Mutex::new(Vec::new());
    /// Threads of the running pool (0 before `startThreads`).
    static STARTED: Mutex<usize> = Mutex::new(0);

    pub fn start(threads: usize) -> Result<usize, Error> {
        let mut started = STARTED.lock().unwrap_or_else(|p| p.into_inner());
        if *started != 0 {
            return Err(Error::Input(format!("threads were already started ({} threads)", *started)));
        }
        let pool = SpinPool::with_spawner(threads, |_, worker| {
            PENDING.lock().unwrap_or_else(|p| p.into_inner()).push(worker);
            Ok(())
        })?;
        let pool: Arc<dyn Parallel> = Arc::new(pool);
        crate::runtime::set_threads(Threads { prefill: pool.clone(), decode: pool });
        *started = threads;
        Ok(threads - 1)
    }

    pub fn take_worker() -> Option<SpinWorker> {
        PENDING.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }
}

/// Makes the thread pool of `threads` threads (this one and `threads - 1` workers) that every
/// model loaded afterwards computes on, and returns how many workers to start (each runs
/// `threadWorkerRun`). Once per instance. The calling thread must be allowed to block (a
/// worker, or Node's main thread; not a browser page's main thread, where a wait traps).
#[wasm_bindgen(js_name = startThreads)]
pub fn start_threads(threads: u32) -> Result<u32, JsValue> {
    let threads = threads as usize;
    if !(1..=MAX_THREADS).contains(&threads) {
        return Err(super::error::with_code(&format!("threads must be 1 to {MAX_THREADS}, not {threads}"), "input"));
    }
    #[cfg(target_feature = "atomics")]
    {
        super::error::js(pool::start(threads)).map(|n| n as u32)
    }
    #[cfg(not(target_feature = "atomics"))]
    {
        if threads == 1 {
            return Ok(0);
        }
        Err(super::error::with_code("this WebAssembly module has no threads (load the package's threads build)", "input"))
    }
}

/// Serves the thread pool's jobs on this worker until the pool ends (never, while the instance
/// lives). Call it once per worker started for `startThreads`; false when no worker is waiting.
#[wasm_bindgen(js_name = threadWorkerRun)]
pub fn thread_worker_run() -> bool {
    #[cfg(target_feature = "atomics")]
    if let Some(worker) = pool::take_worker() {
        worker.run();
        return true;
    }
    false
}

/// The compiled module, for workers to instantiate on the same memory (threads build).
#[wasm_bindgen(js_name = threadModule)]
pub fn thread_module() -> JsValue {
    #[cfg(target_feature = "atomics")]
    return wasm_bindgen::module();
    #[cfg(not(target_feature = "atomics"))]
    JsValue::UNDEFINED
}

/// The shared memory, for workers to instantiate the module on (threads build).
#[wasm_bindgen(js_name = threadMemory)]
pub fn thread_memory() -> JsValue {
    #[cfg(target_feature = "atomics")]
    return wasm_bindgen::memory();
    #[cfg(not(target_feature = "atomics"))]
    JsValue::UNDEFINED
}
