//! The native thread pool: made once (rayon), plugged into models as their prefill runner.
//! Decode stays on one thread unless asked (it is memory-bound; docs/design.md §Threads).

use std::sync::Arc;

use rayon::prelude::*;
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

/// The decode pool: worker threads that spin between jobs, so a job starts within about a
/// microsecond. A decode step runs a few hundred small jobs (one per matmul, 20-100 µs each),
/// and rayon's sleeping workers take tens of µs to wake for each. Workers poll for
/// [`SPIN_LIMIT`] after a job (longer than the gaps inside a decode step), then sleep on a
/// condition variable until the next one, so an idle model costs no CPU. The calling thread
/// runs tasks too. Jobs run one at a time: a task must not call `run` on its own pool (it would
/// wait for itself; the engine never nests jobs, and a MoE block's experts run on `Serial`).
pub struct SpinPool {
    shared: Arc<SpinShared>,
    workers: Vec<std::thread::JoinHandle<()>>,
    /// One job at a time (a pool is shared by clones of a model's `Threads`).
    running: std::sync::Mutex<()>,
}

/// How long a worker polls for the next job before it sleeps.
const SPIN_LIMIT: std::time::Duration = std::time::Duration::from_micros(200);

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
    slot: std::sync::Mutex<SpinSlot>,
    wake: std::sync::Condvar,
    /// `slot.generation`, readable without the lock (what spinning workers poll).
    generation: std::sync::atomic::AtomicU64,
    /// Next task index of the current job.
    next: std::sync::atomic::AtomicUsize,
    /// Tasks of the current job finished.
    done: std::sync::atomic::AtomicUsize,
    /// Workers holding the current job's pointer.
    attached: std::sync::atomic::AtomicUsize,
    /// The first panic of the current job's tasks, re-raised by `run` once no worker holds the
    /// job (a panicking task must neither leave `run` waiting forever nor unwind it early).
    panic: std::sync::Mutex<Option<Box<dyn std::any::Any + Send>>>,
}

impl SpinPool {
    /// A pool running jobs on `threads` threads: the caller and `threads - 1` workers.
    pub fn new(threads: usize) -> Result<Self> {
        let shared = Arc::new(SpinShared {
            slot: std::sync::Mutex::new(SpinSlot { generation: 0, job: None, tasks: 0, stop: false }),
            wake: std::sync::Condvar::new(),
            generation: std::sync::atomic::AtomicU64::new(0),
            next: std::sync::atomic::AtomicUsize::new(0),
            done: std::sync::atomic::AtomicUsize::new(0),
            attached: std::sync::atomic::AtomicUsize::new(0),
            panic: std::sync::Mutex::new(None),
        });
        let mut workers = Vec::new();
        for i in 1..threads.max(1) {
            let shared = shared.clone();
            let handle = std::thread::Builder::new()
                .name(format!("saguaro-decode-{i}"))
                .spawn(move || spin_worker(&shared))
                .map_err(|e| Error::Io(format!("cannot start {threads} threads: {e}")))?;
            workers.push(handle);
        }
        Ok(SpinPool { shared, workers, running: std::sync::Mutex::new(()) })
    }
}

/// Runs the tasks of one job: takes indices until none is left.
fn take_tasks(shared: &SpinShared, job: JobPtr, tasks: usize) {
    use std::sync::atomic::Ordering;
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

fn spin_worker(shared: &SpinShared) {
    use std::sync::atomic::Ordering;
    let mut seen = 0u64;
    loop {
        let start = std::time::Instant::now();
        let mut polls = 0u32;
        while shared.generation.load(Ordering::Acquire) == seen {
            std::hint::spin_loop();
            polls = polls.wrapping_add(1);
            if polls.is_multiple_of(64) && start.elapsed() > SPIN_LIMIT {
                break;
            }
        }
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
        self.workers.len() + 1
    }

    fn run(&self, tasks: usize, task: &(dyn Fn(usize) + Sync)) {
        use std::sync::atomic::Ordering;
        if tasks <= 1 || self.workers.is_empty() {
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
            self.shared.generation.store(slot.generation, std::sync::atomic::Ordering::Release);
        }
        self.shared.wake.notify_all();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
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
    let decode_runner: Arc<dyn Parallel> = if decode <= 1 { Arc::new(Serial) } else { Arc::new(SpinPool::new(decode)?) };
    Ok(Threads { prefill: prefill_runner, decode: decode_runner })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn spin_pool_runs_every_task_once_job_after_job() {
        for threads in [1usize, 2, 3, 5] {
            let pool = SpinPool::new(threads).unwrap();
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
        let pool = Arc::new(SpinPool::new(2).unwrap());
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
        let pool = SpinPool::new(2).unwrap();
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
}
