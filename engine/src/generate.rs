//! Token generation over the forward pass: prefill the prompt once, then decode one token
//! at a time reusing the state (no recomputation of the prefix).
//!
//! Running out of context is a way to finish, not an error (as in chat sessions): generation
//! stops with [`FinishReason::ContextFull`] and returns the tokens made so far. Only a prompt
//! that does not fit at all is an error.

use crate::api::{check_temperature, FinishReason};
use crate::error::{Error, Result};
use crate::math::{argmax, softmax_inplace};
use crate::model::{LogitsMode, Model, State};

/// How to pick and when to stop.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Number of new tokens to produce (fewer if stopped on eos).
    pub max_tokens: usize,
    /// 0 means greedy (argmax, lowest id on ties).
    pub temperature: f32,
    /// Seed of the portable random generator used when `temperature > 0`.
    pub seed: u64,
    /// Stop after emitting one of the model's eos ids.
    pub stop_on_eos: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions { max_tokens: 16, temperature: 0.0, seed: 0, stop_on_eos: false }
    }
}

/// The tokens [`generate_with_reason`] made and why it stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    pub tokens: Vec<u32>,
    /// `Length` (max_tokens reached), `Stop` (an end-of-sequence id with `stop_on_eos`),
    /// `Cancelled` (`on_token` returned false) or `ContextFull`.
    pub finish: FinishReason,
}

/// Generates up to `opts.max_tokens` tokens after `prompt`, continuing from `state`
/// (which may already hold a prefix). `on_token` sees each new id; returning `false`
/// stops generation early. Returns only the tokens; see [`generate_with_reason`].
pub fn generate(
    model: &Model,
    state: &mut State,
    prompt: &[u32],
    opts: &GenerateOptions,
    on_token: impl FnMut(u32) -> bool,
) -> Result<Vec<u32>> {
    generate_with_reason(model, state, prompt, opts, on_token).map(|g| g.tokens)
}

/// [`generate`] with the reason it stopped. When the context fills before `max_tokens`, the
/// tokens made so far are returned with [`FinishReason::ContextFull`]; a prompt that does not
/// fit in the context at all is an [`Error::ContextFull`].
pub fn generate_with_reason(
    model: &Model,
    state: &mut State,
    prompt: &[u32],
    opts: &GenerateOptions,
    mut on_token: impl FnMut(u32) -> bool,
) -> Result<Generated> {
    check_temperature(opts.temperature)?;
    let max = model.config.max_position_embeddings;
    if state.pos + prompt.len() > max {
        return Err(Error::ContextFull(format!(
            "the prompt has {} tokens{}, the context holds {max}",
            prompt.len(),
            if state.pos > 0 { format!(" after {} cached ones", state.pos) } else { String::new() }
        )));
    }
    let mut rng = SplitMix64::new(opts.seed);
    let mut out = Vec::with_capacity(opts.max_tokens.min(4096));
    if opts.max_tokens == 0 {
        model.forward(state, prompt, LogitsMode::None)?;
        return Ok(Generated { tokens: out, finish: FinishReason::Length });
    }
    let mut logits = model.forward(state, prompt, LogitsMode::Last)?;
    let finish = loop {
        let next = pick(&mut logits, opts.temperature, &mut rng);
        out.push(next);
        let keep_going = on_token(next);
        let is_eos = model.config.eos_token_ids.contains(&next);
        if !keep_going {
            break FinishReason::Cancelled;
        }
        if out.len() == opts.max_tokens {
            break FinishReason::Length;
        }
        if opts.stop_on_eos && is_eos {
            break FinishReason::Stop;
        }
        // The token just picked would take the position past the context.
        if state.pos >= max {
            break FinishReason::ContextFull;
        }
        logits = model.forward(state, &[next], LogitsMode::Last)?;
    };
    Ok(Generated { tokens: out, finish })
}

/// Greedy when `temperature == 0`; otherwise samples from `softmax(logits / temperature)`.
fn pick(logits: &mut [f32], temperature: f32, rng: &mut SplitMix64) -> u32 {
    if temperature == 0.0 {
        return argmax(logits) as u32;
    }
    for l in logits.iter_mut() {
        *l /= temperature;
    }
    softmax_inplace(logits);
    let target = rng.next_f32();
    let mut cumulative = 0.0f32;
    for (i, &p) in logits.iter().enumerate() {
        cumulative += p;
        if target < cumulative {
            return i as u32;
        }
    }
    // Rounding left the total just under `target`: take the last token with mass.
    logits.iter().rposition(|&p| p > 0.0).unwrap_or(0) as u32
}

/// SplitMix64: tiny, portable, and identical on every host for a given seed.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 24 bits of precision (exact in f32).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_is_fixed() {
        let mut r = SplitMix64::new(0);
        // Reference values of SplitMix64 with seed 0.
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        let x = r.next_f32();
        assert!((0.0..1.0).contains(&x));
    }

    #[test]
    fn sampling_follows_the_distribution() {
        let mut rng = SplitMix64::new(7);
        let mut counts = [0usize; 3];
        for _ in 0..3000 {
            let mut logits = vec![0.0, (2.0f32).ln(), f32::NEG_INFINITY];
            counts[pick(&mut logits, 1.0, &mut rng) as usize] += 1;
        }
        assert_eq!(counts[2], 0);
        assert!((counts[1] as f32 / counts[0] as f32 - 2.0).abs() < 0.3, "{counts:?}");
    }
}
