//! The native thread pool: made once (rayon), plugged into models as their prefill runner.
//! Decode stays on one thread unless asked (it is memory-bound; docs/design.md §Threads).

use std::sync::Arc;

use rayon::prelude::*;
pub use saguaro_engine::parallel::SpinPool;
use saguaro_engine::parallel::{Parallel, Serial, Threads};
use saguaro_engine::{Error, Result};

/// A fixed pool of worker threads.
pub struct Pool {
    pool: rayon::ThreadPool,
}

impl Pool {
    pub fn new(threads: usize) -> Result<Self> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("saguaro-{i}"))
            .build()
            .map_err(|e| Error::Io(format!("cannot start {threads} threads: {e}")))?;
        Ok(Pool { pool })
    }
}

impl Parallel for Pool {
    fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    fn run(&self, tasks: usize, task: &(dyn Fn(usize) + Sync)) {
        self.pool.install(|| (0..tasks).into_par_iter().for_each(task));
    }
}

/// The decode pool (spinning workers, see [`SpinPool`]) on `threads - 1` std threads and the
/// caller. Its threads end shortly after the pool is dropped.
pub fn spin_pool(threads: usize) -> Result<SpinPool> {
    SpinPool::with_spawner(threads, |i, worker| {
        std::thread::Builder::new()
            .name(format!("saguaro-decode-{i}"))
            .spawn(move || worker.run())
            .map(drop)
            .map_err(|e| Error::Io(format!("cannot start {threads} threads: {e}")))
    })
}

/// Number of cores available to this process.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Runners for `prefill` threads (0 = all cores) and `decode` threads (default 1).
pub fn make_threads(prefill: usize, decode: usize) -> Result<Threads> {
    let runner = |n: usize| -> Result<Arc<dyn Parallel>> {
        if n <= 1 {
            Ok(Arc::new(Serial))
        } else {
            Ok(Arc::new(Pool::new(n)?))
        }
    };
    let prefill = if prefill == 0 { available_cores() } else { prefill };
    let prefill_runner = runner(prefill)?;
    // Decode runs many small jobs: a spinning pool of its own (SpinPool).
    let decode_runner: Arc<dyn Parallel> = if decode <= 1 { Arc::new(Serial) } else { Arc::new(spin_pool(decode)?) };
    Ok(Threads { prefill: prefill_runner, decode: decode_runner })
}
