//! Threads without requiring them (docs/design.md §Threads). The engine splits work into
//! independent tasks and asks a [`Parallel`] runner to execute them; the native host plugs
//! in a thread pool made once ([`SpinPool`] for many small jobs); WebAssembly uses [`Serial`], or a
//! [`SpinPool`] over Web Workers where the build has threads. Work is split so that
//! every output element is computed by exactly the same operations whatever the number of
//! threads: results are bit-identical for every thread count.

use std::sync::{Arc, Mutex};

mod spin;
pub use spin::{SpinPool, SpinWorker};

/// Runs independent tasks, possibly on several threads.
pub trait Parallel: Send + Sync {
    /// How many tasks can usefully run at once.
    fn threads(&self) -> usize;
    /// Runs `task(i)` for every `i < tasks` and returns when all have finished.
    fn run(&self, tasks: usize, task: &(dyn Fn(usize) + Sync));
}

/// Runs every task on the calling thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct Serial;

impl Parallel for Serial {
    fn threads(&self) -> usize {
        1
    }
    fn run(&self, tasks: usize, task: &(dyn Fn(usize) + Sync)) {
        (0..tasks).for_each(task);
    }
}

/// The runners a model uses: prefill (many tokens, compute-bound) and decode (one token,
/// memory-bound: one thread by default).
#[derive(Clone)]
pub struct Threads {
    pub prefill: Arc<dyn Parallel>,
    pub decode: Arc<dyn Parallel>,
}

impl Default for Threads {
    fn default() -> Self {
        Threads { prefill: Arc::new(Serial), decode: Arc::new(Serial) }
    }
}

impl std::fmt::Debug for Threads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Threads(prefill: {}, decode: {})", self.prefill.threads(), self.decode.threads())
    }
}

/// Splits `out` into consecutive pieces of `piece` elements (the last may be shorter) and
/// runs `f(index, piece)` for each, in parallel.
pub fn for_each_piece_mut(par: &dyn Parallel, out: &mut [f32], piece: usize, f: &(dyn Fn(usize, &mut [f32]) + Sync)) {
    if out.is_empty() {
        return;
    }
    let pieces: Vec<Mutex<&mut [f32]>> = out.chunks_mut(piece.max(1)).map(Mutex::new).collect();
    if pieces.len() == 1 || par.threads() == 1 {
        for (i, p) in pieces.into_iter().enumerate() {
            f(i, p.into_inner().unwrap_or_else(|e| e.into_inner()));
        }
        return;
    }
    par.run(pieces.len(), &|i| {
        // Each piece is locked by exactly one task: never contended.
        let mut guard = pieces[i].lock().unwrap_or_else(|e| e.into_inner());
        f(i, &mut guard);
    });
}

/// Splits `n` items into at most `parts` nearly equal consecutive ranges of at least
/// `min_len` items (when there are that many); returns the length of each range.
pub fn split_len(n: usize, parts: usize, min_len: usize) -> usize {
    let parts = parts.max(1).min((n / min_len.max(1)).max(1));
    n.div_ceil(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_the_output_once() {
        let mut out = vec![0.0f32; 10];
        for_each_piece_mut(&Serial, &mut out, 3, &|i, p| p.iter_mut().for_each(|v| *v += i as f32 + 1.0));
        assert_eq!(out, vec![1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 3.0, 3.0, 3.0, 4.0]);
        assert_eq!(split_len(10, 4, 1), 3);
        assert_eq!(split_len(10, 4, 8), 10);
        assert_eq!(split_len(16, 4, 8), 8);
        assert_eq!(split_len(1, 4, 1), 1);
    }
}
