//! [`SpinPool`]: the runner for many small jobs (decode on native hosts, every job in wasm with
//! threads). The engine spawns no thread: the pool's workers are plain loops
//! ([`SpinWorker::run`]) that the host starts however its platform makes threads, through
//! [`SpinPool::with_spawner`]: `std::thread` natively (`saguaro-host`'s `threads::spin_pool`), a
//! Web Worker or Node worker sharing the WebAssembly memory in wasm (`saguaro-wasm`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use super::Parallel;
use crate::Result;

/// Worker threads that spin between jobs, so a job starts within about a microsecond. A decode
/// step runs a few hundred small jobs (one per matmul, 20-100 µs each), and rayon's sleeping
/// workers take tens of µs to wake for each. Workers poll for a short while after a job (longer
/// than the gaps inside a decode step: [`SPIN_LIMIT`], or [`SPIN_POLLS`] where there is no
/// clock), then sleep on a condition variable until the next one, so an idle model costs no
/// CPU. The calling thread runs tasks too. Jobs run one at a time: a task must not call `run` on
/// its own pool (it would wait for itself; the engine never nests jobs, and a MoE block's
/// experts run on `Serial`).
pub struct SpinPool {
    shared: Arc<SpinShared>,
    /// Workers asked for (the pool's thread count is this plus the caller).
    workers: usize,
    /// One job at a time (a pool is shared by clones of a model's `Threads`).
    running: Mutex<()>,
}

/// How long a worker polls for the next job before it sleeps (where `Instant` works).
#[cfg(not(target_family = "wasm"))]
const SPIN_LIMIT: std::time::Duration = std::time::Duration::from_micros(200);

/// How many times a worker polls for the next job before it sleeps where there is no clock
/// (wasm32-unknown-unknown's `Instant` panics): a few hundred µs at V8's speed for this loop.
#[cfg(target_family = "wasm")]
const SPIN_POLLS: u32 = 1 << 18;

/// A job's closure with its lifetime erased. Only dereferenced between the job's publication and
/// [`SpinPool::run`]'s return, which waits until no worker holds it (see `run`).
#[derive(Clone, Copy)]
struct JobPtr(*const (dyn Fn(usize) + Sync));
// SAFETY: the pointee is `Sync` (shared calls from several threads are allowed) and outlives
// every use (run() returns only after all workers detached from the job).
unsafe impl Send for JobPtr {}

struct SpinSlot {
    /// Bumped for every job (and for shutdown).
    generation: u64,
    job: Option<JobPtr>,
    tasks: usize,
    stop: bool,
}

struct SpinShared {
    slot: Mutex<SpinSlot>,
    wake: Condvar,
    /// `slot.generation`, readable without the lock (what spinning workers poll).
    generation: AtomicU64,
    /// Next task index of the current job.
    next: AtomicUsize,
    /// Tasks of the current job finished.
    done: AtomicUsize,
    /// Workers holding the current job's pointer.
    attached: AtomicUsize,
    /// The first panic of the current job's tasks, re-raised by `run` once no worker holds the
    /// job (a panicking task must neither leave `run` waiting forever nor unwind it early).
    panic: Mutex<Option<Box<dyn std::any::Any + Send>>>,
}

/// One worker's loop, handed to a spawner by [`SpinPool::with_spawner`]: the thread that calls
/// [`SpinWorker::run`] serves the pool's jobs until the pool is dropped.
pub struct SpinWorker {
    shared: Arc<SpinShared>,
}

impl SpinWorker {
    /// Serves jobs until the pool is dropped. Blocks (spins, then sleeps on a condition variable):
    /// call it only on a thread that may block (not a browser's main thread).
    pub fn run(self) {
        spin_worker(&self.shared)
    }
}

impl SpinPool {
    /// A pool of the caller and `threads - 1` workers, each started by `spawn(index, worker)`
    /// (index 1..threads), which must arrange for `worker.run()` to be called on a thread of its
    /// own. Jobs never wait for a worker to start: until it does, the threads already serving
    /// (at least the caller) take its tasks. Workers return from `run` once the pool is dropped.
    pub fn with_spawner(threads: usize, mut spawn: impl FnMut(usize, SpinWorker) -> Result<()>) -> Result<Self> {
        let shared = Arc::new(SpinShared {
            slot: Mutex::new(SpinSlot { generation: 0, job: None, tasks: 0, stop: false }),
            wake: Condvar::new(),
            generation: AtomicU64::new(0),
            next: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            attached: AtomicUsize::new(0),
            panic: Mutex::new(None),
        });
        // A pool is made (and dropped on error, stopping what was spawned) before any spawn.
        let mut pool = SpinPool { shared: shared.clone(), workers: 0, running: Mutex::new(()) };
        for i in 1..threads.max(1) {
            spawn(i, SpinWorker { shared: shared.clone() })?;
            pool.workers += 1;
        }
        Ok(pool)
    }
}

/// Runs the tasks of one job: takes indices until none is left.
fn take_tasks(shared: &SpinShared, job: JobPtr, tasks: usize) {
    loop {
        let i = shared.next.fetch_add(1, Ordering::AcqRel);
        if i >= tasks {
            return;
        }
        // SAFETY: the job is attached (the caller of take_tasks holds it: see SpinPool::run), so
        // the closure is alive.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe { (*job.0)(i) }));
        if let Err(payload) = result {
            shared.panic.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(payload);
        }
        shared.done.fetch_add(1, Ordering::AcqRel);
    }
}

/// Polls `generation` until it differs from `seen` or the spin budget is spent.
fn spin_until_changed(shared: &SpinShared, seen: u64) {
    #[cfg(not(target_family = "wasm"))]
    {
        let start = std::time::Instant::now();
        let mut polls = 0u32;
        while shared.generation.load(Ordering::Acquire) == seen {
            std::hint::spin_loop();
            polls = polls.wrapping_add(1);
            if polls.is_multiple_of(64) && start.elapsed() > SPIN_LIMIT {
                return;
            }
        }
    }
    #[cfg(target_family = "wasm")]
    for _ in 0..SPIN_POLLS {
        if shared.generation.load(Ordering::Acquire) != seen {
            return;
        }
        std::hint::spin_loop();
    }
}

fn spin_worker(shared: &SpinShared) {
    let mut seen = 0u64;
    loop {
        spin_until_changed(shared, seen);
        let (job, tasks) = {
            let mut slot = shared.slot.lock().unwrap_or_else(|p| p.into_inner());
            while slot.generation == seen && !slot.stop {
                slot = shared.wake.wait(slot).unwrap_or_else(|p| p.into_inner());
            }
            if slot.stop {
                return;
            }
            seen = slot.generation;
            match slot.job {
                // Attach under the lock: run() clears the job under it before waiting for
                // `attached` to drop to zero.
                Some(job) => {
                    shared.attached.fetch_add(1, Ordering::AcqRel);
                    (job, slot.tasks)
                }
                None => continue, // a job that already finished
            }
        };
        take_tasks(shared, job, tasks);
        shared.attached.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Parallel for SpinPool {
    fn threads(&self) -> usize {
        self.workers + 1
    }

    fn run(&self, tasks: usize, task: &(dyn Fn(usize) + Sync)) {
        if tasks <= 1 || self.workers == 0 {
            (0..tasks).for_each(task);
            return;
        }
        let _one_job = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let shared = &*self.shared;
        // SAFETY: lifetime erasure only; the pointer is used only while this call has not returned:
        // workers attach to it under the slot lock while it is published, and this function
        // unpublishes it and waits until no worker is attached before returning.
        let job = JobPtr(unsafe {
            std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), *const (dyn Fn(usize) + Sync + 'static)>(
                task as *const (dyn Fn(usize) + Sync),
            )
        });
        {
            let mut slot = shared.slot.lock().unwrap_or_else(|p| p.into_inner());
            shared.next.store(0, Ordering::Release);
            shared.done.store(0, Ordering::Release);
            slot.job = Some(job);
            slot.tasks = tasks;
            slot.generation += 1;
            shared.generation.store(slot.generation, Ordering::Release);
        }
        shared.wake.notify_all();
        take_tasks(shared, job, tasks);
        while shared.done.load(Ordering::Acquire) < tasks {
            std::hint::spin_loop();
        }
        shared.slot.lock().unwrap_or_else(|p| p.into_inner()).job = None;
        while shared.attached.load(Ordering::Acquire) > 0 {
            std::hint::spin_loop();
        }
        if let Some(payload) = shared.panic.lock().unwrap_or_else(|p| p.into_inner()).take() {
            std::panic::resume_unwind(payload);
        }
    }
}

impl Drop for SpinPool {
    fn drop(&mut self) {
        {
            let mut slot = self.shared.slot.lock().unwrap_or_else(|p| p.into_inner());
            slot.stop = true;
            slot.generation += 1;
            self.shared.generation.store(slot.generation, Ordering::Release);
        }
        self.shared.wake.notify_all();
    }
}

// The tests start std threads, which wasm32 (where the engine's suite also runs, under Node's
// WASI) cannot: the wasm pool is tested through the npm package (Node worker_threads, Chromium).
#[cfg(all(test, not(target_family = "wasm")))]
mod tests {
    use super::*;
    use crate::Error;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// A pool on named std threads (as the native host makes it).
    fn std_pool(threads: usize) -> SpinPool {
        SpinPool::with_spawner(threads, |i, worker| {
            std::thread::Builder::new().name(format!("saguaro-decode-{i}")).spawn(move || worker.run()).map(drop).map_err(|e| Error::Io(e.to_string()))
        })
        .unwrap()
    }

    #[test]
    fn spin_pool_runs_every_task_once_job_after_job() {
        for threads in [1usize, 2, 3, 5] {
            let pool = std_pool(threads);
            assert_eq!(pool.threads(), threads);
            for tasks in [0usize, 1, 2, 3, 7, 64] {
                // Many jobs back to back (the decode pattern), and after a pause long enough
                // for the workers to sleep.
                for round in 0..200 {
                    let hits: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
                    pool.run(tasks, &|i| {
                        hits[i].fetch_add(1, Ordering::Relaxed);
                    });
                    assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "{threads} threads, {tasks} tasks");
                    if round == 100 {
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                }
            }
        }
    }

    #[test]
    fn spin_pool_uses_its_workers_and_serves_two_callers() {
        let pool = Arc::new(std_pool(2));
        let names = std::sync::Mutex::new(std::collections::BTreeSet::new());
        for _ in 0..50 {
            pool.run(8, &|_| {
                names.lock().unwrap().insert(std::thread::current().name().map(str::to_owned));
                std::thread::sleep(std::time::Duration::from_micros(200));
            });
        }
        assert!(names.lock().unwrap().contains(&Some("saguaro-decode-1".to_owned())), "the worker ran no task");
        // Two threads calling run at once: jobs are serialized, each completes.
        let total = Arc::new(AtomicUsize::new(0));
        let callers: Vec<_> = (0..2)
            .map(|_| {
                let (pool, total) = (pool.clone(), total.clone());
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        pool.run(5, &|_| {
                            total.fetch_add(1, Ordering::Relaxed);
                        });
                    }
                })
            })
            .collect();
        callers.into_iter().for_each(|c| c.join().unwrap());
        assert_eq!(total.load(Ordering::Relaxed), 2 * 100 * 5);
    }

    #[test]
    fn spin_pool_reraises_a_task_panic_and_stays_usable() {
        let pool = std_pool(2);
        for bad in [0usize, 5] {
            let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                pool.run(6, &|i| {
                    if i == bad {
                        panic!("task {i} failed");
                    }
                })
            }));
            assert!(caught.is_err(), "the panic of task {bad} was lost");
        }
        let count = AtomicUsize::new(0);
        pool.run(6, &|_| {
            count.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(count.load(Ordering::Relaxed), 6);
    }

    #[test]
    fn spawned_workers_may_start_late_or_never() {
        // Workers that never start (a host that could not make its threads): the caller runs
        // every task, and the pool still reports the threads it was asked for.
        let mut kept = Vec::new();
        let pool = SpinPool::with_spawner(3, |_, w| {
            kept.push(w);
            Ok(())
        })
        .unwrap();
        assert_eq!(pool.threads(), 3);
        let count = AtomicUsize::new(0);
        for _ in 0..20 {
            pool.run(7, &|_| {
                count.fetch_add(1, Ordering::Relaxed);
            });
        }
        assert_eq!(count.load(Ordering::Relaxed), 140);
        // Started late (as a Web Worker is, after its module loads): they join the next jobs and
        // return once the pool is dropped.
        let late: Vec<_> = kept.into_iter().map(|w| std::thread::spawn(move || w.run())).collect();
        let hits: Vec<AtomicUsize> = (0..64).map(|_| AtomicUsize::new(0)).collect();
        for _ in 0..100 {
            pool.run(64, &|i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
        }
        assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 100));
        drop(pool);
        late.into_iter().for_each(|h| h.join().unwrap());
    }

    #[test]
    fn a_failing_spawner_is_an_error_and_stops_the_started_workers() {
        let mut started = Vec::new();
        let result = SpinPool::with_spawner(4, |i, w| {
            if i == 3 {
                return Err(Error::Io("no more threads".into()));
            }
            started.push(std::thread::spawn(move || w.run()));
            Ok(())
        });
        assert!(matches!(result, Err(Error::Io(_))));
        // The pool made before the failure was dropped: its workers return.
        started.into_iter().for_each(|h| h.join().unwrap());
    }
}
