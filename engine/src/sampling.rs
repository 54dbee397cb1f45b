//! Choosing the next token, identically on every host.
//!
//! Order of operations for one step (`logits` = the model's f32 logits over the whole vocabulary):
//!
//! 1. **Repetition penalty** (if != 1): every distinct id among the last `repetition_window`
//!    tokens of the sequence (prompt and generated, default 64) has its logit divided by the
//!    penalty when positive, multiplied when negative (transformers' rule).
//! 2. **Greedy** when `temperature == 0`: the largest logit, lowest id on ties (NaN never wins).
//! 3. **Temperature**: every logit divided by `temperature`.
//! 4. **Probabilities**. With **top_k** (> 0): the k largest logits, sorted descending (ties by
//!    ascending id: a total order, so every host sorts alike), softmax over those k in that
//!    order. Without: softmax over the whole vocabulary in id order. Softmax is the kernel
//!    table's (the same bits on every tier, see [`crate::kernels`]).
//! 5. **Candidates**, sorted by logit as above: with min_p, only the ids whose probability is at
//!    least `min_p` times the largest (the others could never be kept); else with top_p, all of
//!    them; with neither filter the draw below runs over the whole vocabulary in id order.
//! 6. **top_p** (if < 1): keep the shortest prefix of the candidates whose probabilities, summed
//!    in order, reach `top_p` (at least one token).
//! 7. **min_p** (if > 0): drop candidates whose probability is below `min_p` times the first's.
//! 8. **Draw**: `u = next_f32() * sum(kept)` from the portable [`SplitMix64`] (seeded once per
//!    request), then the first candidate whose running sum exceeds `u` (the last kept one if
//!    rounding leaves `u` past the end).
//!
//! This is transformers' processor order (penalty, temperature, top_k, top_p, min_p). Every f32
//! operation runs in a fixed sequence, so a seed gives the same tokens on every host.
//!
//! [`normalized_entropy`] measures the model's uncertainty for confidence reporting: H / ln V of
//! the softmax of the raw logits (before penalty, temperature and filters), in f64.

pub use crate::generate::SplitMix64;
use crate::kernels::Kernels;
use crate::math::argmax;

/// How to pick tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 = greedy.
    pub temperature: f32,
    /// 0 = off.
    pub top_k: usize,
    /// 1 = off.
    pub top_p: f32,
    /// 0 = off.
    pub min_p: f32,
    /// 1 = off.
    pub repetition_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repetition_window: usize,
    pub seed: u64,
}

impl SamplingParams {
    pub const DEFAULT_REPETITION_WINDOW: usize = 64;

    /// Plain greedy decoding.
    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            repetition_window: Self::DEFAULT_REPETITION_WINDOW,
            seed: 0,
        }
    }
}

/// A sampler for one generation: parameters, the random stream and scratch buffers.
#[derive(Debug, Clone)]
pub struct Sampler {
    pub params: SamplingParams,
    rng: SplitMix64,
    candidates: Vec<(f32, u32)>,
    probs: Vec<f32>,
    full: Vec<f32>,
    seen: Vec<u32>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        let rng = SplitMix64::new(params.seed);
        Sampler { params, rng, candidates: Vec::new(), probs: Vec::new(), full: Vec::new(), seen: Vec::new() }
    }

    /// Applies the repetition penalty to `logits` for the ids in the window of `history`.
    pub fn apply_repetition_penalty(&mut self, logits: &mut [f32], history: &[u32]) {
        let p = self.params.repetition_penalty;
        if p == 1.0 || self.params.repetition_window == 0 {
            return;
        }
        let start = history.len().saturating_sub(self.params.repetition_window);
        self.seen.clear();
        self.seen.extend_from_slice(&history[start..]);
        self.seen.sort_unstable();
        self.seen.dedup();
        for &id in &self.seen {
            if let Some(l) = logits.get_mut(id as usize) {
                *l = if *l < 0.0 { *l * p } else { *l / p };
            }
        }
    }

    /// Picks the next id from `logits` (modified in place) given the sequence so far.
    pub fn sample(&mut self, kernels: &Kernels, logits: &mut [f32], history: &[u32]) -> u32 {
        self.apply_repetition_penalty(logits, history);
        let params = &self.params;
        if params.temperature == 0.0 {
            return argmax(logits) as u32;
        }
        let t = params.temperature;
        for l in logits.iter_mut() {
            *l = if l.is_nan() { f32::NEG_INFINITY } else { *l / t };
        }
        let by_logit = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        self.candidates.clear();
        self.probs.clear();
        if params.top_k > 0 && params.top_k < logits.len() {
            let k = params.top_k;
            self.candidates.extend(logits.iter().enumerate().map(|(i, &l)| (l, i as u32)));
            self.candidates.select_nth_unstable_by(k - 1, by_logit);
            self.candidates.truncate(k);
            self.candidates.sort_unstable_by(by_logit);
            self.probs.extend(self.candidates.iter().map(|c| c.0));
            (kernels.softmax)(&mut self.probs);
        } else {
            self.full.clear();
            self.full.extend_from_slice(logits);
            (kernels.softmax)(&mut self.full);
            if params.min_p == 0.0 && params.top_p >= 1.0 {
                return draw(&mut self.rng, &self.full, |i| i as u32);
            }
            let threshold =
                if params.min_p > 0.0 { params.min_p * self.full.iter().copied().fold(0.0f32, f32::max) } else { 0.0 };
            let full = &self.full;
            self.candidates.extend(
                logits.iter().enumerate().filter(|(i, _)| full[*i] >= threshold).map(|(i, &l)| (l, i as u32)),
            );
            self.candidates.sort_unstable_by(by_logit);
            self.probs.extend(self.candidates.iter().map(|c| full[c.1 as usize]));
        }

        let mut keep = self.probs.len();
        if params.top_p < 1.0 {
            let mut cum = 0.0f32;
            for (i, &p) in self.probs.iter().enumerate() {
                cum += p;
                if cum >= params.top_p {
                    keep = i + 1;
                    break;
                }
            }
        }
        if params.min_p > 0.0 {
            let threshold = params.min_p * self.probs[0];
            keep = self.probs[..keep].iter().position(|&p| p < threshold).unwrap_or(keep).max(1);
        }
        let candidates = &self.candidates;
        draw(&mut self.rng, &self.probs[..keep], |i| candidates[i].1)
    }
}

/// `u = next_f32() * sum(probs)`, then the first index whose running sum exceeds `u` (the last
/// one with mass if rounding leaves `u` past the end), mapped to an id by `id`.
fn draw(rng: &mut SplitMix64, probs: &[f32], id: impl Fn(usize) -> u32) -> u32 {
    let total: f32 = probs.iter().fold(0.0f32, |s, &p| s + p);
    let u = rng.next_f32() * total;
    let mut cum = 0.0f32;
    for (i, &p) in probs.iter().enumerate() {
        cum += p;
        if u < cum {
            return id(i);
        }
    }
    id(probs.iter().rposition(|&p| p > 0.0).unwrap_or(0))
}

/// H / ln V of `softmax(logits)`, where V is the vocabulary size: 0 for a certain prediction,
/// 1 for a uniform one. `scratch` is reused between calls.
pub fn normalized_entropy(kernels: &Kernels, logits: &[f32], scratch: &mut Vec<f32>) -> f32 {
    if logits.len() < 2 {
        return 0.0;
    }
    scratch.clear();
    scratch.extend(logits.iter().map(|&l| if l.is_nan() { f32::NEG_INFINITY } else { l }));
    (kernels.softmax)(scratch);
    let mut h = 0.0f64;
    for &p in scratch.iter() {
        if p > 0.0 {
            let p = f64::from(p);
            h -= p * libm::log(p);
        }
    }
    let h = h / libm::log(logits.len() as f64);
    h.clamp(0.0, 1.0) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> SamplingParams {
        SamplingParams { temperature: 1.0, ..SamplingParams::greedy() }
    }

    fn counts(p: SamplingParams, logits: &[f32], n: usize) -> Vec<usize> {
        let k = Kernels::scalar();
        let mut s = Sampler::new(p);
        let mut c = vec![0; logits.len()];
        for _ in 0..n {
            let mut l = logits.to_vec();
            c[s.sample(&k, &mut l, &[]) as usize] += 1;
        }
        c
    }

    #[test]
    fn greedy_takes_the_first_maximum() {
        let k = Kernels::scalar();
        let mut s = Sampler::new(SamplingParams::greedy());
        assert_eq!(s.sample(&k, &mut [1.0, 3.0, 3.0, f32::NAN], &[]), 1);
    }

    #[test]
    fn repetition_penalty_follows_transformers() {
        let mut s = Sampler::new(SamplingParams { repetition_penalty: 2.0, repetition_window: 2, ..SamplingParams::greedy() });
        let mut l = vec![4.0, -4.0, 4.0, 1.0];
        s.apply_repetition_penalty(&mut l, &[2, 0, 1, 1]);
        // window = last 2 tokens [1, 1]: only id 1 is penalised (multiplied, it is negative).
        assert_eq!(l, vec![4.0, -8.0, 4.0, 1.0]);
        let mut l = vec![4.0, -4.0, 4.0, 1.0];
        s.params.repetition_window = 64;
        s.apply_repetition_penalty(&mut l, &[2, 0, 1, 1]);
        assert_eq!(l, vec![2.0, -8.0, 2.0, 1.0]);
        // Greedy sees the penalised logits.
        let mut l = vec![4.0, 3.0];
        assert_eq!(s.sample(&Kernels::scalar(), &mut l, &[0]), 1);
    }

    #[test]
    fn sampling_follows_the_distribution() {
        let c = counts(params(), &[0.0, 2f32.ln(), f32::NEG_INFINITY], 6000);
        assert_eq!(c[2], 0);
        let ratio = c[1] as f32 / c[0] as f32;
        assert!((ratio - 2.0).abs() < 0.2, "{c:?}");
    }

    #[test]
    fn filters_cut_the_tail() {
        let logits = [3.0, 2.0, 1.0, 0.0, -1.0];
        let c = counts(SamplingParams { top_k: 2, ..params() }, &logits, 2000);
        assert!(c[2..].iter().all(|&x| x == 0) && c[0] > c[1] && c[1] > 0, "{c:?}");
        // p = [.636, .234, .086, .032, .012]: top_p 0.8 keeps two.
        let c = counts(SamplingParams { top_p: 0.8, ..params() }, &logits, 2000);
        assert!(c[2..].iter().all(|&x| x == 0) && c[1] > 0, "{c:?}");
        // min_p 0.1: 0.0636 threshold keeps ids 0, 1, 2.
        let c = counts(SamplingParams { min_p: 0.1, ..params() }, &logits, 4000);
        assert!(c[3..].iter().all(|&x| x == 0) && c[2] > 0, "{c:?}");
        // A tiny temperature is (almost) greedy; top_k 1 is exactly greedy.
        let c = counts(SamplingParams { top_k: 1, ..params() }, &logits, 100);
        assert_eq!(c[0], 100);
    }

    #[test]
    fn same_seed_same_tokens() {
        let logits: Vec<f32> = (0..300).map(|i| ((i * 37 % 101) as f32).sin() * 3.0).collect();
        let run = |seed| {
            let mut s = Sampler::new(SamplingParams { seed, top_p: 0.95, ..params() });
            (0..50).map(|_| s.sample(&Kernels::scalar(), &mut logits.clone(), &[])).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn min_p_shortcut_keeps_what_a_full_sort_keeps() {
        let k = Kernels::scalar();
        let mut gen = SplitMix64::new(99);
        for case in 0..24 {
            let logits: Vec<f32> = (0..500).map(|_| gen.next_f32() * 12.0 - 6.0).collect();
            let min_p = [0.05, 0.15, 0.3][case % 3];
            let top_p = [1.0, 0.9, 0.5][case / 3 % 3];
            let p = SamplingParams { temperature: 0.7, min_p, top_p, ..params() };
            // The plain way: every id sorted, probabilities of the whole vocabulary.
            let scaled: Vec<f32> = logits.iter().map(|l| l / 0.7).collect();
            let mut full = scaled.clone();
            (k.softmax)(&mut full);
            let mut order: Vec<usize> = (0..scaled.len()).collect();
            order.sort_by(|&a, &b| scaled[b].total_cmp(&scaled[a]).then(a.cmp(&b)));
            let mut keep = order.len();
            let mut cum = 0.0f32;
            for (i, &id) in order.iter().enumerate() {
                cum += full[id];
                if top_p < 1.0 && cum >= top_p {
                    keep = i + 1;
                    break;
                }
            }
            let first = full[order[0]];
            let kept: Vec<usize> = order[..keep].iter().copied().take_while(|&id| full[id] >= min_p * first).collect();
            let mut s = Sampler::new(SamplingParams { seed: case as u64, ..p });
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..400 {
                let id = s.sample(&k, &mut logits.clone(), &[]) as usize;
                assert!(kept.contains(&id), "case {case}: {id} not in {kept:?}");
                seen.insert(id);
            }
            assert!(seen.len() > 1 || kept.len() == 1);
        }
    }

    #[test]
    fn entropy_is_normalised() {
        let k = Kernels::scalar();
        let mut scratch = Vec::new();
        assert!((normalized_entropy(&k, &[0.0; 64], &mut scratch) - 1.0).abs() < 1e-5);
        assert!(normalized_entropy(&k, &[100.0, 0.0, 0.0, 0.0], &mut scratch) < 1e-6);
        let h = normalized_entropy(&k, &[0.0, 0.0, f32::NEG_INFINITY, f32::NEG_INFINITY], &mut scratch);
        assert!((h - 0.5).abs() < 1e-5, "{h}");
    }
}
