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
        KvCache { kv_heads, head_dim, len: 0, capacity: 0, keys: vec![Vec::new(); kv_heads], values_t: vec![Vec::new(); kv_heads] }
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
                grown[d * capacity..d * capacity + self.len].copy_from_slice(&rows[d * self.capacity..d * self.capacity + self.len]);
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
        4 * (self.keys.iter().map(Vec::capacity).sum::<usize>() + self.values_t.iter().map(Vec::len).sum::<usize>())
    }
}

impl PartialEq for KvCache {
    /// Equal when they hold the same positions (capacity and spare room do not matter).
    fn eq(&self, other: &Self) -> bool {
        self.kv_heads == other.kv_heads
            && self.head_dim == other.head_dim
            && self.len == other.len
            && self.keys == other.keys
            && (0..self.kv_heads).all(|h| (0..self.head_dim).all(|d| self.value_row(h, d, self.len) == other.value_row(h, d, other.len)))
    }
}

/// The state of one sequence: how many positions were consumed and each layer's memory.
/// Cloning a state snapshots it exactly (the conv tail cannot be rolled back otherwise).
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
                LayerKind::Attention => LayerState::Attention(KvCache::new(config.num_kv_heads, config.head_dim)),
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
