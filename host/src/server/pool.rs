//! Running requests: admission (a bounded queue), `parallel` slots, a pool of sessions with
//! prefix reuse, and cancellation.
//!
//! **Scheduling.** Each admitted request runs on its own blocking thread (tokio's blocking pool)
//! that owns one engine [`Session`] for the request's duration; up to `parallel` of them run at
//! once (a fair semaphore: first come, first served) and the operating system interleaves
//! their decode steps. No batching: every request's tokens are computed exactly as a lone
//! request's (the forward pass is deterministic), so the output never depends on the load.
//! The model's weights are shared read-only by every session; each has its own KV and conv
//! state. Prefill of each request splits across the model's prefill thread pool.
//!
//! **Queue.** At most `parallel + queue` requests are admitted (running or waiting for a
//! slot); one more gets 503 with `Retry-After` at once instead of waiting without bound.
//!
//! **Prefix reuse.** Up to `parallel` sessions live in the pool. A request takes the idle
//! session whose tokens share the longest prefix with its prompt (a conversation's next turn
//! lands on the session that holds its previous turn, which then prefills only the new
//! suffix); among equals, the least recently used one, so hot conversations stay cached.
//!
//! **Cancellation.** The engine's session is pull-based: the worker steps it one prefill chunk
//! or one token at a time and checks before each step whether the client is still there (the
//! handler's receiver alive, the handler's cancel flag unset), so a client that disconnects
//! stops its generation within one step and frees its slot.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use saguaro_engine::session::{ChatModel, Event, Hooks, Session};
use saguaro_engine::{Request, Response, TokenEvent};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;

/// What a worker tells the request's handler.
#[derive(Debug)]
pub enum Msg {
    /// The request was accepted by the engine (prompt rendered, state restored); tokens follow.
    Started,
    /// A generated token (streaming requests only).
    Token(TokenEvent),
    /// The end: the response, or a failure response.
    Done(Response),
}

/// Tokens in flight between a worker and a slow reader before the worker waits.
const CHANNEL: usize = 64;

/// An idle session and what it was last used for.
struct Idle {
    session: Session,
    raw: bool,
    last_used: u64,
}

/// Sessions not in use, and how many exist in all.
struct Sessions {
    idle: Vec<Idle>,
    live: usize,
}

/// Live counters, for `/health`.
#[derive(Debug, Default)]
pub struct Stats {
    pub processing: AtomicUsize,
    pub served: AtomicU64,
    pub cancelled: AtomicU64,
}

pub struct Pool {
    /// Chat requests: the model's chat template.
    pub chat: Arc<ChatModel>,
    /// `/v1/completions`: the same model with the raw-prompt template.
    pub raw: Arc<ChatModel>,
    hooks: Hooks,
    parallel: usize,
    limit: usize,
    slots: Arc<Semaphore>,
    admitted: Arc<AtomicUsize>,
    sessions: Mutex<Sessions>,
    clock: AtomicU64,
    pub stats: Stats,
}

/// A request's place in the queue: released (and counted out) when dropped, so a client that
/// leaves while waiting frees its place.
pub struct Ticket {
    admitted: Arc<AtomicUsize>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Sets the cancel flag when dropped: held by a handler (or its response stream), so that
/// when hyper drops them because the client went away, the worker stops at its next step.
pub struct CancelOnDrop(pub Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A running request as its handler sees it.
pub struct Job {
    pub rx: mpsc::Receiver<Msg>,
    pub cancel: CancelOnDrop,
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl Pool {
    pub fn new(chat: Arc<ChatModel>, raw: Arc<ChatModel>, hooks: Hooks, parallel: usize, queue: usize) -> Self {
        Pool {
            chat,
            raw,
            hooks,
            parallel,
            limit: parallel + queue,
            slots: Arc::new(Semaphore::new(parallel)),
            admitted: Arc::new(AtomicUsize::new(0)),
            sessions: Mutex::new(Sessions { idle: Vec::new(), live: 0 }),
            clock: AtomicU64::new(1),
            stats: Stats::default(),
        }
    }

    pub fn parallel(&self) -> usize {
        self.parallel
    }

    /// Admits a request or answers 503 when `parallel + queue` are already in.
    pub fn admit(&self) -> Result<Ticket, ApiError> {
        let before = self.admitted.fetch_add(1, Ordering::AcqRel);
        let ticket = Ticket { admitted: Arc::clone(&self.admitted) };
        if before >= self.limit {
            drop(ticket);
            return Err(ApiError::overloaded(format!(
                "the server is busy ({} requests running or queued); retry later",
                self.limit
            )));
        }
        Ok(ticket)
    }

    /// Waits for a free slot (first come, first served).
    pub async fn slot(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        Arc::clone(&self.slots).acquire_owned().await.map_err(|_| ApiError::internal("the server is shutting down"))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sessions> {
        // A worker that panicked while holding the lock left the list consistent (it only
        // pushes or removes whole entries), so the poison is not a reason to stop serving.
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The idle session sharing the longest prefix with `prompt` (least recently used among
    /// equals), or a new one. The caller holds a slot, so fewer than `parallel` sessions are in
    /// use and the pool never holds more than `parallel`.
    fn take(&self, raw: bool, prompt: &[u32]) -> Session {
        let mut s = self.lock();
        let best = s
            .idle
            .iter()
            .enumerate()
            .filter(|(_, i)| i.raw == raw)
            .max_by_key(|(_, i)| (common_prefix(i.session.tokens(), prompt), std::cmp::Reverse(i.last_used)))
            .map(|(n, _)| n);
        if let Some(n) = best {
            return s.idle.swap_remove(n).session;
        }
        if s.live >= self.parallel {
            // Every idle session is of the other kind: retire the least recently used.
            if let Some(n) = s.idle.iter().enumerate().min_by_key(|(_, i)| i.last_used).map(|(n, _)| n) {
                s.idle.swap_remove(n);
                s.live -= 1;
            }
        }
        s.live += 1;
        let chat = if raw { &self.raw } else { &self.chat };
        Session::new(Arc::clone(chat)).with_hooks(self.hooks.clone())
    }

    fn give_back(&self, session: Session, raw: bool) {
        let last_used = self.clock.fetch_add(1, Ordering::Relaxed);
        self.lock().idle.push(Idle { session, raw, last_used });
    }

    fn forget(&self) {
        self.lock().live -= 1;
    }

    /// Runs `request` on a blocking thread; `stream` sends each token to the handler.
    pub fn run(self: &Arc<Self>, request: Request, raw: bool, stream: bool, ticket: Ticket, permit: OwnedSemaphorePermit) -> Job {
        let (tx, rx) = mpsc::channel(CHANNEL);
        let cancel = Arc::new(AtomicBool::new(false));
        let pool = Arc::clone(self);
        let flag = Arc::clone(&cancel);
        tokio::task::spawn_blocking(move || {
            let _held = (ticket, permit);
            pool.stats.processing.fetch_add(1, Ordering::Relaxed);
            // A panic in the engine is a bug, but it must not take the server down or leave
            // the client without an answer: it becomes a 500 and the session is dropped.
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let lease = Lease::new(&pool, &request, raw);
                work(lease, &request, stream, &tx, &flag)
            }));
            let cancelled = run.unwrap_or_else(|_| {
                let e = saguaro_engine::Error::Io("internal error: the generation thread panicked".into());
                let _ = tx.blocking_send(Msg::Done(Response::failure(&e)));
                false
            });
            pool.stats.processing.fetch_sub(1, Ordering::Relaxed);
            pool.stats.served.fetch_add(1, Ordering::Relaxed);
            if cancelled {
                pool.stats.cancelled.fetch_add(1, Ordering::Relaxed);
            }
        });
        Job { rx, cancel: CancelOnDrop(cancel) }
    }
}

/// A session taken from the pool: given back when dropped, or forgotten if the worker
/// panicked (its state may be half-updated).
struct Lease<'a> {
    pool: &'a Pool,
    session: Option<Session>,
    raw: bool,
}

impl<'a> Lease<'a> {
    fn new(pool: &'a Pool, request: &Request, raw: bool) -> Self {
        let chat = if raw { &pool.raw } else { &pool.chat };
        let unix = pool.hooks.clock.as_ref().and_then(|c| c.unix_seconds());
        // A request that does not render still gets a session: `start` reports its error.
        let prompt = chat.prompt_tokens(request, unix).unwrap_or_default();
        Lease { pool, session: Some(pool.take(raw, &prompt)), raw }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            if std::thread::panicking() {
                self.pool.forget();
            } else {
                self.pool.give_back(s, self.raw);
            }
        }
    }
}

/// Steps one request to its end. Returns true when it was cancelled (the client left).
fn work(mut lease: Lease<'_>, request: &Request, stream: bool, tx: &mpsc::Sender<Msg>, cancel: &AtomicBool) -> bool {
    let Some(session) = lease.session.as_mut() else { return false };
    let gone = |cancel: &AtomicBool| {
        if tx.is_closed() {
            cancel.store(true, Ordering::Relaxed);
        }
        cancel.load(Ordering::Relaxed)
    };
    let mut completion = match session.start(request) {
        Ok(c) => c,
        Err(e) => {
            let _ = tx.blocking_send(Msg::Done(Response::failure(&e)));
            return false;
        }
    };
    let mut cancelled = tx.blocking_send(Msg::Started).is_err();
    while !cancelled {
        if gone(cancel) {
            cancelled = true;
            break;
        }
        match session.step(&mut completion, cancel) {
            Ok(Some(Event::Token(event))) => {
                if stream && tx.blocking_send(Msg::Token(event)).is_err() {
                    cancelled = true;
                }
            }
            Ok(Some(Event::Prefill { .. })) => {}
            Ok(None) | Err(_) => break,
        }
    }
    if cancelled {
        completion.cancel();
    }
    let response = session.finish(completion);
    let cancelled = cancelled || response.finish_reason == Some(saguaro_engine::FinishReason::Cancelled);
    let _ = tx.blocking_send(Msg::Done(response));
    cancelled
}
