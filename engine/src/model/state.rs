//! The memory of one sequence: what a layer must remember to process the next token.

use crate::config::{LayerKind, Lfm2Config};

/// Per-layer decode state.
#[derive(Debug, Clone, PartialEq)]
pub enum LayerState {
    /// Conv layer: the last L-1 rows of the gated product `B*x` (not `x`), oldest first,
    /// `[L-1, D]`; zeros before the first token.
    Conv { tail: Vec<f32> },
    /// Attention layer: keys after QK-norm and RoPE, and values as is, each
    /// `[positions, KV, hd]`.
    Attention { keys: Vec<f32>, values: Vec<f32> },
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
    pub fn new(config: &Lfm2Config) -> Self {
        let layers = config
            .layer_kinds
            .iter()
            .map(|kind| match kind {
                LayerKind::Conv => LayerState::Conv {
                    tail: vec![0.0; (config.conv_kernel - 1) * config.hidden_size],
                },
                LayerKind::Attention => LayerState::Attention { keys: Vec::new(), values: Vec::new() },
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
                LayerState::Attention { keys, values } => {
                    keys.clear();
                    values.clear();
                }
            }
        }
    }

    /// Bytes held by the state's buffers (for memory reporting).
    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|l| match l {
                LayerState::Conv { tail } => tail.len() * 4,
                LayerState::Attention { keys, values } => (keys.len() + values.len()) * 4,
            })
            .sum()
    }
}
