//! Test inputs shared by the per-architecture kernel tests: a small deterministic generator
//! (so one proptest seed fixes all data) of the values kernels must agree on bit for bit.

#![allow(dead_code)]

/// Small deterministic generator (xorshift64*), so a proptest seed fixes all data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// A finite f32 spread over many magnitudes, signs and some exact zeros.
    pub fn f32(&mut self) -> f32 {
        match self.below(16) {
            0 => 0.0,
            1 => -0.0,
            2 => (self.below(2001) as f32 - 1000.0) * 1e-6,
            _ => {
                let m = (self.below(1 << 24) as f32) / (1 << 24) as f32 * 2.0 - 1.0;
                let e = self.below(13) as i32 - 6;
                m * 2f32.powi(e)
            }
        }
    }
    pub fn f32s(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f32()).collect()
    }
    /// Finite f16 bits (any exponent but the inf/NaN one, subnormals and zeros included).
    pub fn f16_bits(&mut self) -> u16 {
        loop {
            let b = self.next() as u16;
            if b & 0x7C00 != 0x7C00 {
                return b;
            }
        }
    }
    /// bf16 bits of moderate magnitude (|v| < 2^16, so no product or sum overflows).
    pub fn bf16_bits(&mut self) -> u16 {
        let v = self.f32() * 1000.0;
        (v.to_bits() >> 16) as u16
    }
}

