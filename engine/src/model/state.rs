//! The memory of one sequence: what a layer must remember to process the next token.

use crate::config::{LayerKind, ModelConfig};

/// Per-layer decode state.
#[derive(Debug, Clone, PartialEq)]
pub enum LayerState {
    /// Conv layer: the last L-1 rows of the gated product `B*x` (not `x`), oldest first,
    /// `[L-1, D]`; zeros before the first token.
    Conv { tail: Vec<f32> },
    /// Attention layer: its KV cache.
    Attention(KvCache),
}

/// The KV cache of one attention layer, laid out for the attention loops: per kv head, keys
/// `[len, hd]` contiguous (scores are one matmul per head), values transposed `[hd, capacity]`
/// (each output element is one dot product over positions).
#[derive(Debug, Clone)]
pub struct KvCache {
    kv_heads: usize,
    head_dim: usize,
    /// Positions stored.
    len: usize,
    /// Positions the value rows have room for.
    capacity: usize,
    /// Per kv head: keys after QK-norm and RoPE, `[len, hd]`.
    keys: Vec<Vec<f32>>,
    /// Per kv head: values transposed, `[hd, capacity]`; row d holds positions `0..len`.
    values_t: Vec<Vec<f32>>,
}

impl KvCache {
    pub fn new(kv_heads: usize, head_dim: usize) -> Self {
        KvCache {
            kv_heads,
            head_dim,
            len: 0,
            capacity: 0,
            keys: vec![Vec::new(); kv_heads],
            values_t: vec![Vec::new(); kv_heads],
        }
    }

    /// Positions stored.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `tokens` positions: `k` and `v` are `[tokens, KV, hd]`.
    pub fn append(&mut self, k: &[f32], v: &[f32]) {
        let (kv, hd) = (self.kv_heads, self.head_dim);
        let tokens = k.len() / (kv * hd);
        self.reserve(self.len + tokens);
        for t in 0..tokens {
            for h in 0..kv {
                let src = (t * kv + h) * hd;
                self.keys[h].extend_from_slice(&k[src..src + hd]);
                let rows = &mut self.values_t[h];
                for d in 0..hd {
                    rows[d * self.capacity + self.len + t] = v[src + d];
                }
            }
        }
        self.len += tokens;
    }

    /// Makes room for `total` positions (capacity doubles, so appends are amortised O(1)).
    fn reserve(&mut self, total: usize) {
        if total <= self.capacity {
            return;
        }
        let capacity = total.max(self.capacity * 2).max(64);
        let hd = self.head_dim;
        for rows in &mut self.values_t {
            let mut grown = vec![0.0f32; hd * capacity];
            for d in 0..hd {
                grown[d * capacity..d * capacity + self.len]
                    .copy_from_slice(&rows[d * self.capacity..d * self.capacity + self.len]);
            }
            *rows = grown;
        }
        self.capacity = capacity;
    }

    /// Forgets every position from `len` on.
    pub fn truncate(&mut self, len: usize) {
        if len < self.len {
            for k in &mut self.keys {
                k.truncate(len * self.head_dim);
            }
            self.len = len;
        }
    }

    /// Keys of kv head `h` for positions `0..n`, `[n, hd]`.
    #[inline]
    pub fn keys(&self, h: usize, n: usize) -> &[f32] {
        &self.keys[h][..n * self.head_dim]
    }

    /// Keys of kv head `h` for positions `first..end`, `[end - first, hd]` (sliding windows).
    #[inline]
    pub fn keys_range(&self, h: usize, first: usize, end: usize) -> &[f32] {
        &self.keys[h][first * self.head_dim..end * self.head_dim]
    }

    /// Values of kv head `h`, dimension `d`, for positions `first..end`.
    #[inline]
    pub fn value_row_range(&self, h: usize, d: usize, first: usize, end: usize) -> &[f32] {
        &self.values_t[h][d * self.capacity + first..d * self.capacity + end]
    }

    /// Values of kv head `h`, dimension `d`, for positions `0..n`.
    #[inline]
    pub fn value_row(&self, h: usize, d: usize, n: usize) -> &[f32] {
        &self.values_t[h][d * self.capacity..d * self.capacity + n]
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        4 * (self.keys.iter().map(Vec::capacity).sum::<usize>()
            + self.values_t.iter().map(Vec::len).sum::<usize>())
    }
}

impl PartialEq for KvCache {
    /// Equal when they hold the same positions (capacity and spare room do not matter).
    fn eq(&self, other: &Self) -> bool {
        self.kv_heads == other.kv_heads
            && self.head_dim == other.head_dim
            && self.len == other.len
            && self.keys == other.keys
            && (0..self.kv_heads).all(|h| {
                (0..self.head_dim)
                    .all(|d| self.value_row(h, d, self.len) == other.value_row(h, d, other.len))
            })
    }
}

/// The state of one sequence: how many positions were consumed and each layer's memory.
/// Cloning a state snapshots it exactly; [`State::checkpoint`] is the cheap way back to an
/// earlier position of the same sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    /// Tokens processed so far (the position of the next token).
    pub pos: usize,
    pub layers: Vec<LayerState>,
}

impl State {
    pub fn new(config: &ModelConfig) -> Self {
        let layers = config
            .layer_kinds
            .iter()
            .map(|kind| match kind {
                LayerKind::Conv => LayerState::Conv {
                    tail: vec![0.0; (config.conv_kernel - 1) * config.hidden_size],
                },
                LayerKind::Attention => {
                    LayerState::Attention(KvCache::new(config.num_kv_heads, config.head_dim))
                }
            })
            .collect();
        State { pos: 0, layers }
    }

    /// Forgets everything (keeps allocations).
    pub fn reset(&mut self) {
        self.pos = 0;
        for layer in &mut self.layers {
            match layer {
                LayerState::Conv { tail } => tail.fill(0.0),
                LayerState::Attention(cache) => cache.truncate(0),
            }
        }
    }

    /// Remembers this position so that [`State::rollback`] can return to it. Only the conv tails
    /// are copied (they are overwritten by every token and cannot be recomputed); the KV caches
    /// are not, since positions are only ever appended to them.
    pub fn checkpoint(&self) -> Checkpoint {
        let conv_tails = self
            .layers
            .iter()
            .filter_map(|l| match l {
                LayerState::Conv { tail } => Some(tail.clone()),
                LayerState::Attention(_) => None,
            })
            .collect();
        Checkpoint {
            pos: self.pos,
            conv_tails,
        }
    }

    /// A checkpoint at an earlier position `pos` of this sequence, taken after the fact: possible
    /// when no layer has a conv tail (Llama, Gemma: the KV caches just truncate), or when `pos` is
    /// the current position. `None` otherwise (an LFM2 conv layer's tail at an earlier position is
    /// gone) or when `pos` is ahead of the state. Rolling back to it gives the state this sequence
    /// had after its first `pos` tokens, bit for bit.
    pub fn checkpoint_at(&self, pos: usize) -> Option<Checkpoint> {
        if pos == self.pos {
            return Some(self.checkpoint());
        }
        let has_conv = self.layers.iter().any(|l| matches!(l, LayerState::Conv { .. }));
        (pos < self.pos && !has_conv).then(|| Checkpoint {
            pos,
            conv_tails: Vec::new(),
        })
    }

    /// Returns to `checkpoint`: truncates the KV caches to its position and restores the conv
    /// tails. The result is bit-identical to the state when the checkpoint was taken provided
    /// that, since then, this state has only processed more tokens (no [`State::reset`], no
    /// rollback to an earlier checkpoint followed by different tokens): the KV entries of
    /// positions before the checkpoint are then the ones it saw. Panics if the state is behind
    /// the checkpoint or has a different layer layout.
    pub fn rollback(&mut self, checkpoint: &Checkpoint) {
        assert!(
            self.pos >= checkpoint.pos,
            "rollback to position {} from position {}",
            checkpoint.pos,
            self.pos
        );
        let mut tails = checkpoint.conv_tails.iter();
        for layer in &mut self.layers {
            match layer {
                LayerState::Conv { tail } => {
                    let saved = tails
                        .next()
                        .expect("checkpoint of a state with fewer conv layers");
                    tail.copy_from_slice(saved);
                }
                LayerState::Attention(cache) => cache.truncate(checkpoint.pos),
            }
        }
        assert!(
            tails.next().is_none(),
            "checkpoint of a state with more conv layers"
        );
        self.pos = checkpoint.pos;
    }

    /// Bytes held by the state's buffers (for memory reporting).
    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|l| match l {
                LayerState::Conv { tail } => tail.len() * 4,
                LayerState::Attention(cache) => cache.bytes(),
            })
            .sum()
    }
}

/// A position of a [`State`] to roll back to (see [`State::checkpoint`]): the position and a
/// copy of each conv layer's tail, a few kilobytes whatever the context length.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// [`State::pos`] when taken; attention layers roll back by truncating their KV cache here.
    pos: usize,
    /// Each conv layer's tail in layer order, `[L-1, D]` each.
    conv_tails: Vec<Vec<f32>>,
}

impl Checkpoint {
    /// The position it returns to.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes held (the conv tails).
    pub fn bytes(&self) -> usize {
        self.conv_tails.iter().map(|t| t.len() * 4).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::shape_config;

    /// LFM2-350M's state after `tokens` positions (KV filled with a pattern, conv tails too).
    fn lfm2_350m_state(tokens: usize) -> State {
        let config = ModelConfig::from_json(&shape_config("lfm2-350m").unwrap()).unwrap();
        let mut state = State::new(&config);
        let row = config.num_kv_heads * config.head_dim;
        let k: Vec<f32> = (0..tokens * row).map(|i| i as f32).collect();
        for layer in &mut state.layers {
            match layer {
                LayerState::Conv { tail } => tail
                    .iter_mut()
                    .enumerate()
                    .for_each(|(i, x)| *x = i as f32 + tokens as f32),
                LayerState::Attention(cache) => cache.append(&k, &k),
            }
        }
        state.pos = tokens;
        state
    }

    /// What a session holds per snapshot: a whole cloned state before, a checkpoint now.
    /// Prints the numbers (`cargo test -p saguaro-engine snapshot_memory -- --nocapture`).
    #[test]
    fn snapshot_memory_lfm2_350m() {
        for tokens in [128, 512, 2048] {
            let state = lfm2_350m_state(tokens);
            let clone_bytes = state.clone().bytes();
            let checkpoint_bytes = state.checkpoint().bytes();
            println!("LFM2-350M, {tokens:>4} tokens of context: cloned state {clone_bytes:>9} bytes, checkpoint {checkpoint_bytes} bytes");
            // 10 conv layers x [2, 1024] f32 tails, whatever the context.
            assert_eq!(checkpoint_bytes, 10 * 2 * 1024 * 4);
            // 6 attention layers x 8 kv heads x 64 dims x (key + value) f32 per position.
            assert!(clone_bytes >= tokens * 6 * 8 * 64 * 2 * 4 + checkpoint_bytes);
        }
    }

    #[test]
    fn rollback_restores_the_state_bit_for_bit() {
        let config = ModelConfig::from_json(&shape_config("lfm2-350m").unwrap()).unwrap();
        let row = config.num_kv_heads * config.head_dim;
        let mut state = lfm2_350m_state(100);
        let before = state.clone();
        let checkpoint = state.checkpoint();
        // More tokens: KV rows appended (past the first growth of capacity), tails overwritten.
        let more: Vec<f32> = (0..70 * row).map(|i| -(i as f32)).collect();
        for layer in &mut state.layers {
            match layer {
                LayerState::Conv { tail } => tail.fill(7.0),
                LayerState::Attention(cache) => cache.append(&more, &more),
            }
        }
        state.pos += 70;
        assert_ne!(state, before);
        state.rollback(&checkpoint);
        assert_eq!(state, before);
    }
}
