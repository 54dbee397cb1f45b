//! The forward pass over T new tokens (T = prompt length for prefill, 1 for decode), one
//! for every family:
//!
//! ```text
//! h = E[ids] (* sqrt(D) for Gemma)
//! for each layer:
//!     h += PostNorm(Mixer(RMSNorm(h)))    # mixer: LFM2 conv or attention; PostNorm: Gemma only
//!     h += PostNorm(FFN(RMSNorm(h)))      # gated FFN (SwiGLU; GeGLU for Gemma) or LFM2 MoE
//! logits = RMSNorm(h; final norm) @ Head^T (Gemma: soft-capped when configured)
//! ```
//! - LFM2: conv or attention (QK-norm) mixers, no post norms, SwiGLU or MoE.
//! - Llama: attention without QK-norm (optional biases), SwiGLU (optional biases).
//! - Gemma 3: RMSNorm weights are `1 + w` (added at load), attention with QK-norm, a
//!   sliding window on local layers with their own RoPE base, the `query_pre_attn_scalar`
//!   scale; GeGLU; norms after the mixer and FFN too.
//! Every per-token computation is the same whether tokens arrive together or one by one
//! (each output row is its own dot product in the canonical order), so batched prefill and
//! incremental decode give bit-identical logits.

use super::{AttentionBlock, ConvBlock, FeedForward, Ffn, KvCache, LayerState, Mixer, MoeBlock, Model, State};
use crate::error::{Error, Result};
use crate::kernels::Kernels;
use crate::config::Activation;
use crate::math::{gelu_tanh, rms_norm, rms_norm_rows_inplace, softcap, Rope};
use crate::parallel::{for_each_piece_mut, split_len, Parallel, Serial};

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

        // h: [T, D] residual stream, starting from the embedding rows (times Gemma's scale).
        let mut h = vec![0.0f32; t * d];
        for (row, &tok) in h.chunks_exact_mut(d).zip(tokens) {
            self.embedding.row(tok as usize, row);
            if let Some(scale) = cfg.embed_scale {
                row.iter_mut().for_each(|x| *x *= scale);
            }
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
            if let Some(w) = &layer.post_mixer_norm {
                rms_norm_rows_inplace(k, &mut delta, w, cfg.norm_eps);
            }
            add_inplace(&mut h, &delta);

            normed.copy_from_slice(&h);
            rms_norm_rows_inplace(k, &mut normed, &layer.ffn_norm, cfg.norm_eps);
            match &layer.ffn {
                Ffn::Dense(ffn) => ffn_forward(k, par, ffn, &normed, t, &mut delta),
                Ffn::Moe(moe) => moe_forward(k, par, moe, &normed, t, &mut delta),
            }
            if let Some(w) = &layer.post_ffn_norm {
                rms_norm_rows_inplace(k, &mut delta, w, cfg.norm_eps);
            }
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
        if let Some(cap) = cfg.final_softcap {
            logits.iter_mut().for_each(|x| *x = softcap(*x, cap));
        }
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
    add_bias_rows(&mut q, &block.q_bias);
    add_bias_rows(&mut new_k, &block.k_bias);
    add_bias_rows(&mut new_v, &block.v_bias);

    // QK-norm per head (LFM2, Gemma), then RoPE at each token's absolute position.
    if let Some(w) = &block.q_norm {
        rms_norm_rows_inplace(k, &mut q, w, cfg.norm_eps);
    }
    if let Some(w) = &block.k_norm {
        rms_norm_rows_inplace(k, &mut new_k, w, cfg.norm_eps);
    }
    let (mut cos, mut sin) = (vec![0.0f32; hd / 2], vec![0.0f32; hd / 2]);
    for ti in 0..t {
        block.rope.angles(pos + ti, &mut cos, &mut sin);
        for head in q[ti * heads * hd..(ti + 1) * heads * hd].chunks_exact_mut(hd) {
            Rope::apply(head, &cos, &sin);
        }
        for head in new_k[ti * kv_width..(ti + 1) * kv_width].chunks_exact_mut(hd) {
            Rope::apply(head, &cos, &sin);
        }
    }
    cache.append(&new_k, &new_v);
    let cache = &*cache;

    // softmax(q k^T * scale + mask) v. Query head h reads kv head h / group; the `group`
    // query heads of a kv head share one matmul over its keys. Each score is the canonical
    // dot product times the scale, each output element the canonical dot product of the
    // probabilities with one transposed value row: the same bits for any split. The mask is
    // causal, and for sliding-window layers also drops keys W or more positions back: the
    // cache keeps every position, a query just reads the rows `first..=p` of it.
    let scale = cfg.attn_scale;
    let mut attn = vec![0.0f32; t * heads * hd]; // [T, H, hd]
    let per_task = split_len(t, par.threads(), 4);
    for_each_piece_mut(par, &mut attn, per_task * heads * hd, &|task, piece| {
        let mut scores = Vec::with_capacity(group * (pos + t)); // [group, visible]
        for (i, out_t) in piece.chunks_exact_mut(heads * hd).enumerate() {
            let ti = task * per_task + i;
            let end = pos + ti + 1; // causal: positions < end
            let first = block.window.map_or(0, |w| end.saturating_sub(w)); // window: positions >= first
            let visible = end - first;
            for kvh in 0..kv_heads {
                let q_group = &q[(ti * heads + kvh * group) * hd..][..group * hd];
                scores.clear();
                scores.resize(group * visible, 0.0);
                (k.matmul_f32)(q_group, cache.keys_range(kvh, first, end), hd, &mut scores);
                for (g, row) in scores.chunks_exact_mut(visible).enumerate() {
                    for s in row.iter_mut() {
                        *s *= scale;
                    }
                    (k.softmax)(row);
                    let o = &mut out_t[(kvh * group + g) * hd..][..hd];
                    for (d, od) in o.iter_mut().enumerate() {
                        *od = (k.dot_f32)(row, cache.value_row_range(kvh, d, first, end));
                    }
                }
            }
        }
    });
    block.out_proj.forward(k, par, &attn, out);
    add_bias_rows(out, &block.out_bias);
}

/// Gated FFN: `w2(act(w1 u + b1) * (w3 u + b3)) + b2` (biases only where the config has
/// them). SiLU goes through the kernel table; gelu-tanh is elementwise `libm` math.
fn ffn_forward(k: &Kernels, par: &dyn Parallel, ffn: &FeedForward, u: &[f32], t: usize, out: &mut [f32]) {
    let f = ffn.w1.rows;
    let mut gate = vec![0.0f32; t * f]; // [T, F]
    let mut up = vec![0.0f32; t * f]; // [T, F]
    ffn.w1.forward(k, par, u, &mut gate);
    ffn.w3.forward(k, par, u, &mut up);
    add_bias_rows(&mut gate, &ffn.b1);
    add_bias_rows(&mut up, &ffn.b3);
    match ffn.act {
        Activation::Silu => (k.silu_mul)(&mut gate, &up),
        Activation::GeluTanh => {
            for (g, &u) in gate.iter_mut().zip(&up) {
                *g = gelu_tanh(*g) * u;
            }
        }
    }
    ffn.w2.forward(k, par, &gate, out);
    add_bias_rows(out, &ffn.b2);
}

/// Chooses one token's experts from its router logits `logits` [E]: `experts[j]` and
/// `weights[j]` (j < k) in selection-rank order, highest `sigmoid(logit) + bias` first.
/// Equal selection scores go to the lower expert index. The weights are the sigmoid scores
/// (without the bias), normalised by `sum + 1e-6` (summed in rank order) when
/// `norm_topk_prob`, then times `routed_scaling_factor`.
pub(crate) fn route(moe: &MoeBlock, logits: &[f32], experts: &mut [usize], weights: &mut [f32]) {
    route_with(moe.expert_bias.as_deref(), moe.norm_topk_prob, moe.routed_scaling_factor, logits, experts, weights)
}

fn route_with(
    bias: Option<&[f32]>,
    norm_topk_prob: bool,
    routed_scaling_factor: f32,
    logits: &[f32],
    experts: &mut [usize],
    weights: &mut [f32],
) {
    let scores: Vec<f32> = logits.iter().map(|&x| crate::math::sigmoid(x)).collect();
    let select: Vec<f32> = match bias {
        Some(bias) => scores.iter().zip(bias).map(|(&s, &b)| s + b).collect(),
        None => scores.clone(),
    };
    let mut taken = vec![false; scores.len()];
    for j in 0..experts.len() {
        let mut best: Option<usize> = None;
        for (e, &v) in select.iter().enumerate() {
            // strictly greater: a tie keeps the lower index found first
            if !taken[e] && best.is_none_or(|b| v > select[b]) {
                best = Some(e);
            }
        }
        let e = best.expect("k <= number of experts");
        taken[e] = true;
        experts[j] = e;
        weights[j] = scores[e];
    }
    if norm_topk_prob {
        let sum = weights.iter().fold(0.0f32, |a, &w| a + w) + 1e-6;
        for w in weights.iter_mut() {
            *w /= sum;
        }
    }
    for w in weights.iter_mut() {
        *w *= routed_scaling_factor;
    }
}

/// Up to this many (token, rank) rows per MoE block, the chosen experts run in parallel, one
/// per thread (decode); above it, each expert's matmuls are split across the threads (prefill).
const EXPERT_PARALLEL_MAX_ROWS: usize = 16;

/// Mixture-of-experts FFN over T tokens. Tokens are grouped by expert: each chosen expert
/// runs one SwiGLU over the rows routed to it (in token order), so a decode step reads only
/// its k experts. Each token's output is then `sum_j w_j * y_j` accumulated from zero in
/// selection-rank order j = 0..k, the same operations whatever T is: a batched prefill
/// gives the same bits as running the tokens one by one.
fn moe_forward(k: &Kernels, par: &dyn Parallel, moe: &MoeBlock, u: &[f32], t: usize, out: &mut [f32]) {
    let d = moe.gate.cols;
    let (n_exp, top_k) = (moe.experts.len(), moe.top_k);
    let mut logits = vec![0.0f32; t * n_exp]; // [T, E]
    moe.gate.forward(k, par, u, &mut logits);
    let mut chosen = vec![0usize; t * top_k]; // [T, k] expert of each (token, rank)
    let mut weights = vec![0.0f32; t * top_k]; // [T, k]
    for ((l, c), w) in logits.chunks_exact(n_exp).zip(chosen.chunks_exact_mut(top_k)).zip(weights.chunks_exact_mut(top_k)) {
        route(moe, l, c, w);
    }

    let mut ys = vec![0.0f32; t * top_k * d]; // [T, k, D] expert output of each (token, rank)
    // The chosen experts in index order, each with its (token, rank) slots in token order.
    let active: Vec<(usize, Vec<usize>)> = (0..n_exp)
        .map(|e| (e, (0..t * top_k).filter(|&s| chosen[s] == e).collect::<Vec<_>>()))
        .filter(|(_, slots)| !slots.is_empty())
        .collect();
    // One expert's SwiGLU over its slots' rows, into `y` [slots, D].
    let run_expert = |par: &dyn Parallel, e: usize, slots: &[usize], y: &mut Vec<f32>| {
        let mut xs = Vec::with_capacity(slots.len() * d);
        for &s in slots {
            let ti = s / top_k;
            xs.extend_from_slice(&u[ti * d..(ti + 1) * d]);
        }
        y.clear();
        y.resize(slots.len() * d, 0.0);
        ffn_forward(k, par, &moe.experts[e], &xs, slots.len(), y);
    };
    let mut outputs: Vec<Vec<f32>> = vec![Vec::new(); active.len()];
    if par.threads() > 1 && active.len() > 1 && t * top_k <= EXPERT_PARALLEL_MAX_ROWS {
        // Decode (a few rows per expert): one task per expert, each on one thread, instead of
        // splitting every small matmul across the threads (3 synchronisations per expert).
        // Each expert's rows are computed by the same operations either way.
        let cells: Vec<std::sync::Mutex<Vec<f32>>> = outputs.drain(..).map(std::sync::Mutex::new).collect();
        par.run(active.len(), &|i| {
            let (e, slots) = &active[i];
            let mut y = cells[i].lock().unwrap_or_else(|p| p.into_inner());
            run_expert(&Serial, *e, slots, &mut y);
        });
        outputs = cells.into_iter().map(|c| c.into_inner().unwrap_or_else(|p| p.into_inner())).collect();
    } else {
        for ((e, slots), y) in active.iter().zip(&mut outputs) {
            run_expert(par, *e, slots, y);
        }
    }
    for ((_, slots), y) in active.iter().zip(&outputs) {
        for (&s, row) in slots.iter().zip(y.chunks_exact(d)) {
            ys[s * d..(s + 1) * d].copy_from_slice(row);
        }
    }

    for ((o, w), y) in out.chunks_exact_mut(d).zip(weights.chunks_exact(top_k)).zip(ys.chunks_exact(top_k * d)) {
        o.fill(0.0);
        for (&wj, yj) in w.iter().zip(y.chunks_exact(d)) {
            for (oc, &yc) in o.iter_mut().zip(yj) {
                *oc += wj * yc;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::route_with;
    use crate::math::sigmoid;

    #[test]
    fn router_selects_with_bias_weights_without_it() {
        let logits = [0.5f32, -1.0, 2.0, 0.0];
        let (mut e, mut w) = ([0usize; 2], [0.0f32; 2]);
        // no bias: the two highest sigmoid scores, highest first
        route_with(None, false, 1.0, &logits, &mut e, &mut w);
        assert_eq!(e, [2, 0]);
        assert_eq!(w, [sigmoid(2.0), sigmoid(0.5)]);
        // the bias changes the choice, not the weights
        let bias = [0.0f32, 0.9, 0.0, 0.0];
        route_with(Some(&bias), false, 1.0, &logits, &mut e, &mut w);
        assert_eq!(e, [1, 2]);
        assert_eq!(w, [sigmoid(-1.0), sigmoid(2.0)]);
        // normalised by sum + 1e-6, then scaled
        route_with(Some(&bias), true, 2.5, &logits, &mut e, &mut w);
        let sum = sigmoid(-1.0) + sigmoid(2.0) + 1e-6;
        assert_eq!(w, [sigmoid(-1.0) / sum * 2.5, sigmoid(2.0) / sum * 2.5]);
    }

    #[test]
    fn router_ties_go_to_the_lower_index() {
        let logits = [1.0f32, 3.0, 1.0, 3.0, 1.0];
        let (mut e, mut w) = ([0usize; 3], [0.0f32; 3]);
        route_with(None, true, 1.0, &logits, &mut e, &mut w);
        assert_eq!(e, [1, 3, 0]);
        let bias = [0.5f32, 0.0, 0.5, 0.0, 0.5]; // experts 0, 2 and 4 tie at sigmoid(0) + 0.5
        route_with(Some(&bias), true, 1.0, &[0.0; 5], &mut e, &mut w);
        assert_eq!(e, [0, 2, 4]);
    }
}
