//! The LFM2 forward pass over T new tokens (T = prompt length for prefill, 1 for decode).
//!
//! ```text
//! h = E[ids]
//! for each layer: h += Mixer(RMSNorm(h)); h += FFN(RMSNorm(h))
//! logits = RMSNorm(h; embedding_norm) @ E^T
//! ```
//! Every per-token computation is the same whether tokens arrive together or one by one
//! (each output row is its own dot product in the canonical order), so batched prefill and
//! incremental decode give bit-identical logits.

use super::{AttentionBlock, ConvBlock, FeedForward, KvCache, LayerState, Mixer, Model, State};
use crate::error::{Error, Result};
use crate::kernels::Kernels;
use crate::math::{rms_norm, rms_norm_rows_inplace, Rope};
use crate::parallel::{for_each_piece_mut, split_len, Parallel};

/// Prompts longer than this are processed in chunks of this many tokens.
pub const PREFILL_CHUNK: usize = 256;

/// Which logits the forward pass returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitsMode {
    /// One row per input token: `[T, V]`.
    All,
    /// Only the last token's row: `[V]` (prefill before sampling).
    Last,
    /// None (prefill whose logits nobody reads).
    None,
}

impl Model {
    /// Runs `tokens` through the model after the `state.pos` tokens already in `state`,
    /// appends them to the state and returns the logits asked for.
    ///
    /// Input is validated before the state is touched: on error the state is unchanged.
    pub fn forward(&self, state: &mut State, tokens: &[u32], mode: LogitsMode) -> Result<Vec<f32>> {
        self.check_tokens(tokens)?;
        if state.layers.len() != self.layers.len() {
            return Err(Error::Input("the state belongs to a different model".into()));
        }
        let max = self.config.max_position_embeddings;
        if state.pos + tokens.len() > max {
            return Err(Error::ContextFull(format!(
                "{} cached + {} new tokens exceed the context of {max}",
                state.pos,
                tokens.len()
            )));
        }
        // Long prompts run in chunks: bounded scratch memory, same bits (every token's
        // computation is independent of how the prompt is cut).
        if tokens.len() > PREFILL_CHUNK {
            let mut logits = Vec::new();
            let chunks: Vec<&[u32]> = tokens.chunks(PREFILL_CHUNK).collect();
            for (i, chunk) in chunks.iter().enumerate() {
                let last = i + 1 == chunks.len();
                let chunk_mode = match mode {
                    LogitsMode::All => LogitsMode::All,
                    _ if last => mode,
                    _ => LogitsMode::None,
                };
                logits.extend(self.forward_chunk(state, chunk, chunk_mode));
            }
            return Ok(logits);
        }
        Ok(self.forward_chunk(state, tokens, mode))
    }

    /// The forward pass proper over validated tokens.
    fn forward_chunk(&self, state: &mut State, tokens: &[u32], mode: LogitsMode) -> Vec<f32> {

        let k = &self.kernels;
        let cfg = &self.config;
        let (t, d) = (tokens.len(), cfg.hidden_size);
        // Prefill is compute-bound and uses the prefill pool; one-token decode is
        // memory-bound and uses the decode runner (one thread by default).
        let par: &dyn Parallel = if t == 1 { &*self.threads.decode } else { &*self.threads.prefill };

        // h: [T, D] residual stream, starting from the embedding rows (no scaling).
        let mut h = vec![0.0f32; t * d];
        for (row, &tok) in h.chunks_exact_mut(d).zip(tokens) {
            self.embedding.row(tok as usize, row);
        }

        let mut normed = vec![0.0f32; t * d]; // [T, D]
        let mut delta = vec![0.0f32; t * d]; // [T, D] output of a mixer or FFN
        for (layer, layer_state) in self.layers.iter().zip(state.layers.iter_mut()) {
            normed.copy_from_slice(&h);
            rms_norm_rows_inplace(k, &mut normed, &layer.operator_norm, cfg.norm_eps);
            match (&layer.mixer, layer_state) {
                (Mixer::Conv(block), LayerState::Conv { tail }) => {
                    conv_forward(k, par, block, tail, &normed, t, d, &mut delta)
                }
                (Mixer::Attention(block), LayerState::Attention(cache)) => {
                    attention_forward(self, par, block, cache, state.pos, &normed, t, &mut delta)
                }
                _ => unreachable!("State::new builds one state per layer of the same kind"),
            }
            add_inplace(&mut h, &delta);

            normed.copy_from_slice(&h);
            rms_norm_rows_inplace(k, &mut normed, &layer.ffn_norm, cfg.norm_eps);
            ffn_forward(k, par, &layer.ffn, &normed, t, &mut delta);
            add_inplace(&mut h, &delta);
        }
        state.pos += t;

        let rows: &[f32] = match mode {
            LogitsMode::None => return Vec::new(),
            LogitsMode::All => &h,
            LogitsMode::Last => &h[(t - 1) * d..],
        };
        let n = rows.len() / d;
        let mut final_h = vec![0.0f32; rows.len()];
        for (src, dst) in rows.chunks_exact(d).zip(final_h.chunks_exact_mut(d)) {
            rms_norm(k, src, &self.final_norm, cfg.norm_eps, dst);
        }
        let head = self.head();
        let mut logits = vec![0.0f32; n * head.rows];
        head.forward(k, par, &final_h, &mut logits);
        logits
    }
}

fn add_inplace(acc: &mut [f32], x: &[f32]) {
    for (a, &b) in acc.iter_mut().zip(x) {
        *a += b;
    }
}

fn add_bias_rows(x: &mut [f32], bias: &Option<Vec<f32>>) {
    if let Some(b) = bias {
        for row in x.chunks_exact_mut(b.len()) {
            add_inplace(row, b);
        }
    }
}

/// Gated short convolution over T tokens; `tail` [L-1, D] carries the previous `B*x` rows.
#[allow(clippy::too_many_arguments)]
fn conv_forward(
    k: &Kernels,
    par: &dyn Parallel,
    block: &ConvBlock,
    tail: &mut [f32],
    u: &[f32],
    t: usize,
    d: usize,
    out: &mut [f32],
) {
    // BCx: [T, 3D], split along features as B | C | x.
    let mut bcx = vec![0.0f32; t * 3 * d];
    block.in_proj.forward(k, par, u, &mut bcx);
    add_bias_rows(&mut bcx, &block.in_bias);

    // window: [L-1 + T, D] = previous tail rows, then this call's B*x rows.
    let taps_n = block.taps.len() / d; // L
    let hist = taps_n - 1;
    let mut window = vec![0.0f32; (hist + t) * d];
    window[..hist * d].copy_from_slice(tail);
    for (row, w) in bcx.chunks_exact(3 * d).zip(window[hist * d..].chunks_exact_mut(d)) {
        let (b, x) = (&row[..d], &row[2 * d..]);
        for c in 0..d {
            w[c] = b[c] * x[c];
        }
    }

    // y[t][c] = C[t][c] * (sum_j taps[c][j] * window[t + j][c] + conv_bias[c])
    let mut y = vec![0.0f32; t * d];
    for ti in 0..t {
        let c_gate = &bcx[ti * 3 * d + d..ti * 3 * d + 2 * d];
        for c in 0..d {
            let taps = &block.taps[c * taps_n..(c + 1) * taps_n];
            let mut acc = 0.0f32;
            for (j, &tap) in taps.iter().enumerate() {
                acc += tap * window[(ti + j) * d + c];
            }
            if let Some(bias) = &block.conv_bias {
                acc += bias[c];
            }
            y[ti * d + c] = c_gate[c] * acc;
        }
    }
    tail.copy_from_slice(&window[t * d..]);

    block.out_proj.forward(k, par, &y, out);
    add_bias_rows(out, &block.out_bias);
}

/// Attention over T new tokens at positions `pos..pos+T`, appending to the KV cache.
#[allow(clippy::too_many_arguments)]
fn attention_forward(
    model: &Model,
    par: &dyn Parallel,
    block: &AttentionBlock,
    cache: &mut KvCache,
    pos: usize,
    u: &[f32],
    t: usize,
    out: &mut [f32],
) {
    let k = &model.kernels;
    let cfg = &model.config;
    let (heads, kv_heads, hd) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
    let group = heads / kv_heads;
    let kv_width = kv_heads * hd;

    let mut q = vec![0.0f32; t * heads * hd]; // [T, H, hd]
    let mut new_k = vec![0.0f32; t * kv_width]; // [T, KV, hd]
    let mut new_v = vec![0.0f32; t * kv_width]; // [T, KV, hd]
    block.q_proj.forward(k, par, u, &mut q);
    block.k_proj.forward(k, par, u, &mut new_k);
    block.v_proj.forward(k, par, u, &mut new_v);

    // QK-norm per head, then RoPE at each token's absolute position.
    rms_norm_rows_inplace(k, &mut q, &block.q_norm, cfg.norm_eps);
    rms_norm_rows_inplace(k, &mut new_k, &block.k_norm, cfg.norm_eps);
    let (mut cos, mut sin) = (vec![0.0f32; hd / 2], vec![0.0f32; hd / 2]);
    for ti in 0..t {
        model.rope.angles(pos + ti, &mut cos, &mut sin);
        for head in q[ti * heads * hd..(ti + 1) * heads * hd].chunks_exact_mut(hd) {
            Rope::apply(head, &cos, &sin);
        }
        for head in new_k[ti * kv_width..(ti + 1) * kv_width].chunks_exact_mut(hd) {
            Rope::apply(head, &cos, &sin);
        }
    }
    cache.append(&new_k, &new_v);
    let cache = &*cache;

    // softmax(q k^T * scale + causal mask) v. Query head h reads kv head h / group; the
    // `group` query heads of a kv head share one matmul over its keys. Each score is the
    // canonical dot product times the scale, each output element the canonical dot product
    // of the probabilities with one transposed value row: the same bits for any split.
    let scale = (1.0 / (hd as f64).sqrt()) as f32;
    let mut attn = vec![0.0f32; t * heads * hd]; // [T, H, hd]
    let per_task = split_len(t, par.threads(), 4);
    for_each_piece_mut(par, &mut attn, per_task * heads * hd, &|task, piece| {
        let mut scores = Vec::with_capacity(group * (pos + t)); // [group, visible]
        for (i, out_t) in piece.chunks_exact_mut(heads * hd).enumerate() {
            let ti = task * per_task + i;
            let visible = pos + ti + 1; // causal: positions 0..=pos+ti
            for kvh in 0..kv_heads {
                let q_group = &q[(ti * heads + kvh * group) * hd..][..group * hd];
                scores.clear();
                scores.resize(group * visible, 0.0);
                (k.matmul_f32)(q_group, cache.keys(kvh, visible), hd, &mut scores);
                for (g, row) in scores.chunks_exact_mut(visible).enumerate() {
                    for s in row.iter_mut() {
                        *s *= scale;
                    }
                    (k.softmax)(row);
                    let o = &mut out_t[(kvh * group + g) * hd..][..hd];
                    for (d, od) in o.iter_mut().enumerate() {
                        *od = (k.dot_f32)(row, cache.value_row(kvh, d, visible));
                    }
                }
            }
        }
    });
    block.out_proj.forward(k, par, &attn, out);
}

/// SwiGLU FFN: `w2(silu(w1 u) * w3 u)`.
fn ffn_forward(k: &Kernels, par: &dyn Parallel, ffn: &FeedForward, u: &[f32], t: usize, out: &mut [f32]) {
    let f = ffn.w1.rows;
    let mut gate = vec![0.0f32; t * f]; // [T, F]
    let mut up = vec![0.0f32; t * f]; // [T, F]
    ffn.w1.forward(k, par, u, &mut gate);
    ffn.w3.forward(k, par, u, &mut up);
    (k.silu_mul)(&mut gate, &up);
    ffn.w2.forward(k, par, &gate, out);
}
