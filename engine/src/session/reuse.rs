//! Prefix reuse: bringing the session's state to the end of a prompt while running only what
//! it does not hold yet (see the module docs of [`crate::session`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::Session;
use crate::error::{Error, Result};
use crate::model::{Checkpoint, LogitsMode, State};

/// Prompt tokens per forward call during prefill: cancellation is checked between chunks (the
/// forward pass gives the same bits however a prompt is cut).
const PREFILL_CHUNK: usize = 256;

/// The end of the last prompt's prefill, kept for reuse. It is a [`Checkpoint`] of the live
/// state, not a copy: it stays usable while the live tokens start with `tokens` (the state has
/// only grown past it), and is dropped when the state moves off that prefix.
#[derive(Debug, Clone)]
pub(super) struct Snapshot {
    /// The prompt the checkpoint ends.
    tokens: Vec<u32>,
    /// The live state's position after `tokens`, with the conv tails of that moment.
    checkpoint: Checkpoint,
    /// The prompt's last logits `[V]`.
    logits: Vec<f32>,
}

/// What [`Session::prefill`] did.
#[derive(Debug, Clone)]
pub struct Prefill {
    /// The last prompt position's logits `[V]`.
    pub logits: Vec<f32>,
    /// Prompt tokens whose state was already there (live or from the snapshot).
    pub reused: usize,
    /// Prompt tokens run through the model now.
    pub processed: usize,
}

/// Where a prompt's prefill starts.
pub(super) enum PrefillStart {
    /// The snapshot holds exactly this prompt: its last logits.
    Done(Vec<f32>),
    /// The state holds this many prompt tokens; the rest must run.
    From(usize),
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl Session {
    /// Forgets the conversation (state and snapshot).
    pub fn reset(&mut self) {
        self.state.reset();
        self.tokens.clear();
        self.snapshot = None;
    }

    /// Bytes held by the state and the snapshot.
    pub fn state_bytes(&self) -> usize {
        self.state.bytes()
            + self.snapshot.as_ref().map_or(0, |s| {
                s.checkpoint.bytes() + s.logits.len() * 4 + s.tokens.len() * 4
            })
    }

    /// Returns the live state to the snapshot (which must be usable: see [`Snapshot`]).
    fn roll_back_to(state: &mut State, tokens: &mut Vec<u32>, snapshot: &Snapshot) {
        debug_assert!(
            tokens.starts_with(&snapshot.tokens),
            "the snapshot is not a prefix of the live state"
        );
        state.rollback(&snapshot.checkpoint);
        tokens.truncate(snapshot.tokens.len());
    }

    /// Brings the state to the end of `prompt` reusing what it can (see the module docs) and
    /// returns the last logits. Errors: empty prompt, bad ids, a prompt longer than the context,
    /// [`Error::Cancelled`] (the state then holds the chunks done so far).
    pub fn prefill(&mut self, prompt: &[u32], cancel: &AtomicBool) -> Result<Prefill> {
        let reused = match self.prepare_prefill(prompt)? {
            PrefillStart::Done(logits) => {
                return Ok(Prefill {
                    logits,
                    reused: prompt.len(),
                    processed: 0,
                })
            }
            PrefillStart::From(reused) => reused,
        };
        loop {
            if cancel.load(Ordering::Relaxed) {
                return Err(Error::Cancelled);
            }
            if let Some(logits) = self.prefill_chunk(prompt)? {
                return Ok(Prefill {
                    logits,
                    reused,
                    processed: prompt.len() - reused,
                });
            }
        }
    }

    /// Checks `prompt` and restores the longest reusable state: the live one or the snapshot.
    pub(super) fn prepare_prefill(&mut self, prompt: &[u32]) -> Result<PrefillStart> {
        let model = Arc::clone(&self.chat.model);
        model.check_tokens(prompt)?;
        let max = model.config.max_position_embeddings;
        if prompt.len() > max {
            return Err(Error::ContextFull(format!(
                "the prompt has {} tokens, the context holds {max}",
                prompt.len()
            )));
        }
        if let Some(s) = self.snapshot.as_ref().filter(|s| s.tokens == prompt) {
            Self::roll_back_to(&mut self.state, &mut self.tokens, s);
            return Ok(PrefillStart::Done(s.logits.clone()));
        }
        let live = common_prefix(&self.tokens, prompt);
        if !(live == self.tokens.len() && live < prompt.len()) {
            // The prompt leaves the live tokens (or ends inside them). Two ways back: the
            // snapshot (the end of the last prompt), or, for a model without conv layers, any
            // earlier position, e.g. inside the last answer when the prompt's history holds it
            // tokenized differently. The prompt's last token always runs (its logits are needed).
            let keep = live.min(prompt.len() - 1);
            let snapshot_len = self
                .snapshot
                .as_ref()
                .filter(|s| s.tokens.len() < prompt.len() && prompt.starts_with(&s.tokens))
                .map(|s| s.tokens.len());
            let rewind = self
                .state
                .checkpoint_at(keep)
                .filter(|_| keep > 0 && snapshot_len.is_none_or(|n| keep > n));
            if let Some(checkpoint) = rewind {
                self.state.rollback(&checkpoint);
                self.tokens.truncate(keep);
                if self.snapshot.as_ref().is_some_and(|s| !self.tokens.starts_with(&s.tokens)) {
                    // Its position is gone from the state.
                    self.snapshot = None;
                }
            } else if snapshot_len.is_some() {
                let s = self.snapshot.as_ref().expect("checked above");
                Self::roll_back_to(&mut self.state, &mut self.tokens, s);
            } else {
                self.state.reset();
                self.tokens.clear();
                // The snapshot's positions were in the state just cleared.
                self.snapshot = None;
            }
        }
        Ok(PrefillStart::From(self.tokens.len()))
    }

    /// Runs the next [`PREFILL_CHUNK`] tokens of `prompt` (the state holds a prefix of it).
    /// Returns the last logits once the whole prompt is in (and snapshots it).
    pub(super) fn prefill_chunk(&mut self, prompt: &[u32]) -> Result<Option<Vec<f32>>> {
        let model = Arc::clone(&self.chat.model);
        let start = self.tokens.len();
        let end = prompt.len().min(start + PREFILL_CHUNK);
        let last = end == prompt.len();
        let mode = if last {
            LogitsMode::Last
        } else {
            LogitsMode::None
        };
        let logits = match model.forward(&mut self.state, &prompt[start..end], mode) {
            Ok(l) => l,
            Err(e) => {
                self.reset();
                return Err(e);
            }
        };
        self.tokens.extend_from_slice(&prompt[start..end]);
        if !last {
            return Ok(None);
        }
        if self.keep_snapshots {
            self.snapshot = Some(Snapshot {
                tokens: prompt.to_vec(),
                checkpoint: self.state.checkpoint(),
                logits: logits.clone(),
            });
        }
        Ok(Some(logits))
    }
}
