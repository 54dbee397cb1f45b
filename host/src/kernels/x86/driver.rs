//! The x86 kernel drivers: one generic implementation of every SIMD kernel entry (shape
//! checks, tiling, the choice of tile, the safe wrapper), monomorphised per tier over the
//! tier's register-tile microkernels ([`FloatTier`], [`QuantTier`]).
//!
//! The drivers only decide *which* tile of the output is computed next; every f32 operation
//! happens in the microkernels, in the order fixed by the scalar definitions
//! (`saguaro_engine::kernels::scalar`), and each output is computed whole by one tile, so the
//! tiling never changes a result.
//!
//! # Safety: the one argument for every entry here
//!
//! The microkernels are `#[target_feature]` functions of their tier: calling one is sound
//! only on a CPU that has the tier's features. The entries ([`dot_f32`], [`matmul_f32`],
//! [`matmul_f16`], [`matmul_bf16`], [`quantize_row`], [`gemm_q8`], [`gemm_q4`]) are safe
//! `fn`s generic over a tier `T`, visible only inside `x86`; the only code that names them is
//! the tiers' `kernels()` functions, each of which puts `entry::<ItsTier>` into a table only
//! after its `available()` found every feature of that tier at run time (debug builds check
//! [`FloatTier::available`] / [`QuantTier::available`] again on every call). Each entry then
//! checks the shapes exactly as the scalar definition does (the same panics) and asks the
//! microkernels only for tiles inside the checked shapes, which are the bounds their own
//! `# Safety` sections require.

use std::arch::x86_64::*;
use std::ops::Range;

use saguaro_engine::kernels::{QuantActs, QuantMatrix};
use saguaro_engine::quant::{QuantKind, GROUP};

use super::super::shapes::{self, GemmDims};

/// Bytes of activations (one token = `cols_padded` bytes) a token chunk may occupy so that
/// the chunk stays in L2 while every row tile of the weights streams past it.
const ACT_CHUNK_BYTES: usize = 256 * 1024;

/// How far ahead (bytes) decode GEMV tiles prefetch the weight stream. One sequential
/// stream per call (a row block at a time) plus this prefetch measured best on Zen: the
/// hardware prefetcher alone leaves int4 GEMV ~15% short of the memory bandwidth.
pub(super) const PREFETCH_DISTANCE: usize = 4096;

/// Bytes of f32 activations a token chunk of an f32/f16/bf16 matmul may occupy.
const F32_CHUNK_BYTES: usize = 256 * 1024;

// ---------------------------------------------------------------------------------------
// What a tier supplies
// ---------------------------------------------------------------------------------------

/// Weight element kinds of the f32-output matmuls (`KIND` of [`FloatTier::mm_tile`]).
pub(super) const W_F32: u8 = 0;
pub(super) const W_F16: u8 = 1;
pub(super) const W_BF16: u8 = 2;

/// A tier's f32 microkernels: the dot product, the matmul register tile (f32, f16 or bf16
/// weights) and the activation quantizer.
///
/// Every method is `unsafe`: besides the bounds stated at each, it needs the tier's target
/// features, which is what [`FloatTier::available`] checks.
pub(super) trait FloatTier {
    /// Whether this CPU has every feature the microkernels are compiled with.
    fn available() -> bool;

    /// Rows x tokens of a prefill matmul tile: (4, 4) or (2, 2). Decode (one token) always
    /// uses 4 rows with the next 4 prefetched. Remainders use the tiles listed in [`matmul`].
    const MATMUL_TILE: (usize, usize);

    /// `dot(a, b)` over `n` f32 in the canonical 16-lane order.
    ///
    /// # Safety
    /// The tier's features present; `a` and `b` readable for `n` f32.
    unsafe fn dot(a: *const f32, b: *const f32, n: usize) -> f32;

    /// Rows `r0..r0+RR` x tokens `t0..t0+TT` of `out[t][r] = dot(x[t], w[r])`, `w` of
    /// element kind `KIND` ([`W_F32`], [`W_F16`], [`W_BF16`]); `PF` prefetches the next `RR`
    /// rows (decode).
    ///
    /// # Safety
    /// The tier's features present; `x` holds `tokens * cols` f32, `w` `rows * cols`
    /// elements of `KIND`, `out` `tokens * rows` f32; `r0 + RR <= rows`, `t0 + TT <= tokens`.
    unsafe fn mm_tile<const KIND: u8, const RR: usize, const TT: usize, const PF: bool>(
        x: *const f32,
        w: *const u8,
        cols: usize,
        rows: usize,
        out: *mut f32,
        r0: usize,
        t0: usize,
    );

    /// `scalar::quantize_row` on the whole row.
    ///
    /// # Safety
    /// The tier's features present; `q.len() == 32 * scales.len() >= x.len()`.
    unsafe fn quantize_row(x: &[f32], q: &mut [i8], scales: &mut [f32]);
}

/// A tier's quantized GEMV/GEMM register tiles over the `r16k4` layout.
pub(super) trait QuantTier {
    /// Whether this CPU has every feature the microkernels are compiled with; it must imply
    /// AVX2, which the driver's correction sums ([`group_sums`]) use.
    fn available() -> bool;

    /// Row blocks x tokens of a prefill tile (decode: one row block, prefetched).
    const GEMM_TILE: (usize, usize);

    /// Whether the INT8 tile expects `-128 * sum(x)` per (token, group) in `c.corr` (tiles
    /// that multiply offset-binary weights `w + 128` with `vpdpbusd`); INT4 tiles always get
    /// `-8 * sum(x)` (their nibbles are `q + 8`).
    const Q8_OFFSET_BINARY: bool;

    /// INT8 tile: row blocks `bi..bi+RB` (relative to the call) x tokens `t..t+TT`; `PF`
    /// prefetches the weight stream ahead (decode).
    ///
    /// # Safety
    /// The tier's features present; `bi + RB <= c.nblocks`, `t + TT <= c.tokens`, and the
    /// [`GemmCall`] invariants with the correction sums attached.
    unsafe fn q8<const RB: usize, const TT: usize, const PF: bool>(c: &GemmCall, bi: usize, t: usize);

    /// INT4 tile, as [`QuantTier::q8`].
    ///
    /// # Safety
    /// As [`QuantTier::q8`].
    unsafe fn q4<const RB: usize, const TT: usize, const PF: bool>(c: &GemmCall, bi: usize, t: usize);
}

// ---------------------------------------------------------------------------------------
// The entries (safety: the module docs)
// ---------------------------------------------------------------------------------------

pub(super) fn dot_f32<T: FloatTier>(a: &[f32], b: &[f32]) -> f32 {
    debug_assert!(T::available());
    assert_eq!(a.len(), b.len(), "dot_f32: length mismatch");
    // SAFETY: features (module docs); both slices hold a.len() elements.
    unsafe { T::dot(a.as_ptr(), b.as_ptr(), a.len()) }
}

pub(super) fn quantize_row<T: FloatTier>(x: &[f32], q: &mut [i8], scales: &mut [f32]) {
    debug_assert!(T::available());
    assert!(q.len() == scales.len() * GROUP && x.len() <= q.len(), "quantize_row: bad lengths");
    // SAFETY: features (module docs); lengths checked above.
    unsafe { T::quantize_row(x, q, scales) }
}

pub(super) fn matmul_f32<T: FloatTier>(x: &[f32], w: &[f32], cols: usize, out: &mut [f32]) {
    debug_assert!(T::available());
    let (rows, tokens) = shapes::matmul_f32(x, w, cols, out);
    // SAFETY: features (module docs); shapes checked above.
    unsafe { matmul::<T, W_F32>(x, w.as_ptr().cast(), cols, rows, tokens, out) }
}

pub(super) fn matmul_f16<T: FloatTier>(x: &[f32], w: &[u8], cols: usize, out: &mut [f32]) {
    debug_assert!(T::available());
    let (rows, tokens) = shapes::matmul_half(x, w, cols, out);
    // SAFETY: as `matmul_f32`; `w` holds rows * cols f16.
    unsafe { matmul::<T, W_F16>(x, w.as_ptr(), cols, rows, tokens, out) }
}

pub(super) fn matmul_bf16<T: FloatTier>(x: &[f32], w: &[u8], cols: usize, out: &mut [f32]) {
    debug_assert!(T::available());
    let (rows, tokens) = shapes::matmul_half(x, w, cols, out);
    // SAFETY: as `matmul_f32`; `w` holds rows * cols bf16.
    unsafe { matmul::<T, W_BF16>(x, w.as_ptr(), cols, rows, tokens, out) }
}

/// The f32-output matmul over `T`'s tiles: 4 rows x 1 token for decode (the next 4 rows
/// prefetched), `T::MATMUL_TILE` for prefill, which is 4 x 4 (a 4-row tier: remainders of
/// fewer rows go row by row with up to 4 tokens) or 2 x 2 (a 2-row tier: 2 x 1 and 1 x 2
/// tiles, else 1 x 1). Each tier's dispatch is a plain match of its own tile sizes: a
/// merged match costs about two instructions more per tile (callgrind).
///
/// # Safety
/// `T`'s features present; `w` holds `rows * cols` elements of `KIND`, `x` `tokens * cols`,
/// `out` `tokens * rows`.
unsafe fn matmul<T: FloatTier, const KIND: u8>(
    x: &[f32],
    w: *const u8,
    cols: usize,
    rows: usize,
    tokens: usize,
    out: &mut [f32],
) {
    const { assert!(matches!(T::MATMUL_TILE, (4, 4) | (2, 2)), "matmul: the driver has tile sets for 4 x 4 and 2 x 2") };
    let (xp, op) = (x.as_ptr(), out.as_mut_ptr());
    let (rr, tt) = if tokens == 1 { (4, 1) } else { T::MATMUL_TILE };
    drive_matmul(rows, tokens, cols, rr, tt, |rn, tn, r, t| {
        // SAFETY: the driver keeps r + rn <= rows and t + tn <= tokens, so every tile below
        // lies inside the shapes; features as the caller.
        unsafe {
            if T::MATMUL_TILE.0 == 4 {
                match (rn, tn) {
                    (4, 1) if tokens == 1 => T::mm_tile::<KIND, 4, 1, true>(xp, w, cols, rows, op, r, t),
                    (4, 4) => T::mm_tile::<KIND, 4, 4, false>(xp, w, cols, rows, op, r, t),
                    (4, 3) => T::mm_tile::<KIND, 4, 3, false>(xp, w, cols, rows, op, r, t),
                    (4, 2) => T::mm_tile::<KIND, 4, 2, false>(xp, w, cols, rows, op, r, t),
                    (4, 1) => T::mm_tile::<KIND, 4, 1, false>(xp, w, cols, rows, op, r, t),
                    _ => {
                        for row in r..r + rn {
                            match tn {
                                4 => T::mm_tile::<KIND, 1, 4, false>(xp, w, cols, rows, op, row, t),
                                3 => T::mm_tile::<KIND, 1, 3, false>(xp, w, cols, rows, op, row, t),
                                2 => T::mm_tile::<KIND, 1, 2, false>(xp, w, cols, rows, op, row, t),
                                _ => {
                                    for tok in t..t + tn {
                                        T::mm_tile::<KIND, 1, 1, false>(xp, w, cols, rows, op, row, tok);
                                    }
                                }
                            }
                        }
                    }
                }
            } else {
                match (rn, tn) {
                    (4, 1) if tokens == 1 => T::mm_tile::<KIND, 4, 1, true>(xp, w, cols, rows, op, r, t),
                    (2, 2) => T::mm_tile::<KIND, 2, 2, false>(xp, w, cols, rows, op, r, t),
                    (2, 1) => T::mm_tile::<KIND, 2, 1, false>(xp, w, cols, rows, op, r, t),
                    (1, 2) => T::mm_tile::<KIND, 1, 2, false>(xp, w, cols, rows, op, r, t),
                    _ => {
                        for row in r..r + rn {
                            for tok in t..t + tn {
                                T::mm_tile::<KIND, 1, 1, false>(xp, w, cols, rows, op, row, tok);
                            }
                        }
                    }
                }
            }
        }
    });
}

pub(super) fn gemm_q8<T: QuantTier>(w: &QuantMatrix, acts: &QuantActs, blocks: Range<usize>, out: &mut [f32]) {
    gemm::<T>(w, acts, blocks, out)
}

pub(super) fn gemm_q4<T: QuantTier>(w: &QuantMatrix, acts: &QuantActs, blocks: Range<usize>, out: &mut [f32]) {
    gemm::<T>(w, acts, blocks, out)
}

/// Calls `T::$tile::<RB, TT, PF>(c, bi, t)` for the run-time tile size `(rbn, tn)`: one row
/// block x 1 token prefetched (decode), 1 or 2 row blocks x 2-4 tokens; any other size
/// (never produced by the tiers' settings) goes one row block and one token at a time,
/// which gives the same results.
macro_rules! quant_tile {
    ($tier:ident :: $tile:ident, $c:expr, $rbn:expr, $tn:expr, $bi:expr, $t:expr) => {
        match ($rbn, $tn) {
            (1, 1) => $tier::$tile::<1, 1, true>($c, $bi, $t),
            (1, 2) => $tier::$tile::<1, 2, false>($c, $bi, $t),
            (1, 3) => $tier::$tile::<1, 3, false>($c, $bi, $t),
            (1, 4) => $tier::$tile::<1, 4, false>($c, $bi, $t),
            (2, 1) => $tier::$tile::<2, 1, false>($c, $bi, $t),
            (2, 2) => $tier::$tile::<2, 2, false>($c, $bi, $t),
            (2, 3) => $tier::$tile::<2, 3, false>($c, $bi, $t),
            (2, 4) => $tier::$tile::<2, 4, false>($c, $bi, $t),
            _ => {
                for b in $bi..$bi + $rbn {
                    for tt in $t..$t + $tn {
                        $tier::$tile::<1, 1, false>($c, b, tt);
                    }
                }
            }
        }
    };
}

/// Both quantized entries: dispatches on `w.kind` like the scalar definition (either entry
/// accepts either kind).
fn gemm<T: QuantTier>(w: &QuantMatrix, acts: &QuantActs, blocks: Range<usize>, out: &mut [f32]) {
    debug_assert!(T::available());
    let mut call = GemmCall::new(w, acts, &blocks, out);
    if call.is_empty() {
        return;
    }
    let mut sums = SumBuf::new(call.sums_len());
    let factor = match w.kind {
        QuantKind::Q8 => T::Q8_OFFSET_BINARY.then_some(-128),
        QuantKind::Q4 => Some(-8),
    };
    if let Some(factor) = factor {
        // SAFETY: `T::available()` implies AVX2 (trait contract; module docs); `GemmCall::new`
        // checked `acts.q`, and `sums` holds tokens * groups entries.
        unsafe { group_sums(acts, call.groups, factor, sums.as_mut_slice()) };
    }
    call.set_corr(sums.as_mut_slice());
    let c = &call;
    let (rbt, ttt) = if c.tokens == 1 { (1, 1) } else { T::GEMM_TILE };
    match w.kind {
        // SAFETY: features (module docs); the driver keeps bi + rbn <= nblocks and
        // t + tn <= tokens, the bounds the tiles need given `GemmCall`'s invariants (corr
        // attached above).
        QuantKind::Q8 => c.drive(rbt, ttt, |rbn, tn, bi, t| unsafe { quant_tile!(T::q8, c, rbn, tn, bi, t) }),
        // SAFETY: as for Q8.
        QuantKind::Q4 => c.drive(rbt, ttt, |rbn, tn, bi, t| unsafe { quant_tile!(T::q4, c, rbn, tn, bi, t) }),
    }
}

// ---------------------------------------------------------------------------------------
// Call views, loops and checks shared by the entries
// ---------------------------------------------------------------------------------------

/// Raw views of one quantized matmul call, validated by [`GemmCall::new`].
///
/// Invariants (asserted in `new`, relied on by every tile function):
/// - `data` holds at least `(rb0 + nblocks) * groups * block_group_bytes(kind)` bytes,
/// - `scales` holds at least `(rb0 + nblocks) * groups * 32` bytes,
/// - `xq` holds `tokens * cols_padded` i8 with `cols_padded >= groups * 32`,
/// - `xs` and `corr` hold `tokens * groups` values,
/// - `out` holds `tokens * width` f32 with `width = nblocks * 16`.
pub(super) struct GemmCall {
    pub data: *const u8,
    pub scales: *const u8,
    pub groups: usize,
    pub cols_padded: usize,
    pub xq: *const i8,
    pub xs: *const f32,
    pub corr: *const i32,
    pub out: *mut f32,
    pub width: usize,
    pub tokens: usize,
    pub rb0: usize,
    pub nblocks: usize,
}

impl GemmCall {
    /// Checks the shapes with [`shapes::gemm`] (the scalar kernel's panics, plus the buffer
    /// lengths the scalar code would find out by indexing).
    ///
    /// The correction sums are attached afterwards with [`GemmCall::set_corr`].
    pub fn new(w: &QuantMatrix, acts: &QuantActs, blocks: &Range<usize>, out: &mut [f32]) -> Self {
        let GemmDims { groups, nblocks, width, tokens } = shapes::gemm(w, acts, blocks, out);
        GemmCall {
            data: w.data.as_ptr(),
            scales: w.scales.as_ptr(),
            groups,
            cols_padded: acts.cols_padded,
            xq: acts.q.as_ptr(),
            xs: acts.scales.as_ptr(),
            corr: std::ptr::null(),
            out: out.as_mut_ptr(),
            width,
            tokens,
            rb0: blocks.start,
            nblocks,
        }
    }

    /// Attaches the per-(token, group) correction sums (`tokens * groups` values).
    pub fn set_corr(&mut self, corr: &[i32]) {
        assert!(corr.len() >= self.tokens * self.groups, "gemm: correction buffer too short");
        self.corr = corr.as_ptr();
    }

    /// Number of (token, group) pairs: the length of the correction buffer.
    pub fn sums_len(&self) -> usize {
        if self.is_empty() {
            0
        } else {
            self.tokens * self.groups
        }
    }

    /// Pointers to the data and scales of row blocks `bi..bi+RB` of the call (`group_bytes`
    /// per group: 512 for INT8, 256 for INT4).
    ///
    /// # Safety
    /// `bi + RB <= self.nblocks`.
    #[inline]
    pub unsafe fn block_ptrs<const RB: usize>(
        &self,
        bi: usize,
        group_bytes: usize,
    ) -> ([*const u8; RB], [*const u8; RB]) {
        let mut wp = [std::ptr::null(); RB];
        let mut sp = [std::ptr::null(); RB];
        for r in 0..RB {
            let rb = self.rb0 + bi + r;
            // SAFETY: rb < rb0 + nblocks: offsets within the checked buffers.
            unsafe {
                wp[r] = self.data.add(rb * self.groups * group_bytes);
                sp[r] = self.scales.add(rb * self.groups * 32);
            }
        }
        (wp, sp)
    }

    /// Row pointers (`cols_padded` i8 each) of tokens `t..t+TT`.
    ///
    /// # Safety
    /// `t + TT <= self.tokens`.
    #[inline]
    pub unsafe fn token_ptrs<const TT: usize>(&self, t: usize) -> [*const i8; TT] {
        let mut xp = [std::ptr::null(); TT];
        for (i, p) in xp.iter_mut().enumerate() {
            // SAFETY: t + i < tokens: the row lies in acts.q.
            *p = unsafe { self.xq.add((t + i) * self.cols_padded) };
        }
        xp
    }

    /// Whether there is anything to compute.
    pub fn is_empty(&self) -> bool {
        self.tokens == 0 || self.nblocks == 0
    }

    /// Walks the output in tiles: token chunks that fit in L2, then row tiles of up to
    /// `rb_tile` row blocks, then token tiles of up to `tt_tile` tokens.
    /// `tile(rbn, tn, bi, t)` computes row blocks `bi..bi+rbn` (relative to the call) for
    /// tokens `t..t+tn`. Tiles never overlap and cover the output exactly once, so the
    /// tiling does not change any result (each output is computed whole by one tile).
    pub fn drive(&self, rb_tile: usize, tt_tile: usize, mut tile: impl FnMut(usize, usize, usize, usize)) {
        let chunk = (ACT_CHUNK_BYTES / self.cols_padded.max(1)).max(tt_tile) / tt_tile * tt_tile;
        let mut t0 = 0;
        while t0 < self.tokens {
            let t_end = (t0 + chunk).min(self.tokens);
            let mut bi = 0;
            while bi < self.nblocks {
                let rbn = rb_tile.min(self.nblocks - bi);
                let mut t = t0;
                while t < t_end {
                    let tn = tt_tile.min(t_end - t);
                    tile(rbn, tn, bi, t);
                    t += tn;
                }
                bi += rbn;
            }
            t0 = t_end;
        }
    }
}

/// A small-buffer for the per-(token, group) activation sums: on the stack for decode-sized
/// calls, on the heap for prefill.
struct SumBuf {
    stack: [i32; 512],
    heap: Vec<i32>,
    len: usize,
}

impl SumBuf {
    pub fn new(len: usize) -> Self {
        let heap = if len > 512 { vec![0; len] } else { Vec::new() };
        SumBuf { stack: [0; 512], heap, len }
    }

    pub fn as_mut_slice(&mut self) -> &mut [i32] {
        if self.len > 512 {
            &mut self.heap
        } else {
            &mut self.stack[..self.len]
        }
    }
}

/// `corr[t * groups + g] = factor * sum(x[t][32g .. 32g + 32])` for every token and group
/// (exact i32: |sum| <= 32 * 128).
///
/// # Safety
/// AVX2 must be available; `acts.q` must hold `tokens * cols_padded` values with
/// `cols_padded >= 32 * groups`, and `corr` `tokens * groups` (as [`GemmCall::new`] checks).
#[target_feature(enable = "avx2")]
unsafe fn group_sums(acts: &QuantActs, groups: usize, factor: i32, corr: &mut [i32]) {
    debug_assert!(corr.len() >= acts.tokens * groups && acts.q.len() >= acts.tokens * acts.cols_padded);
    let flip = _mm256_set1_epi8(-128);
    let zero = _mm256_setzero_si256();
    for t in 0..acts.tokens {
        for g in 0..groups {
            // SAFETY: t < tokens and 32 * g + 32 <= cols_padded, so the 32 bytes read lie in
            // acts.q (length >= tokens * cols_padded, checked by the caller).
            let v = unsafe { _mm256_loadu_si256(acts.q.as_ptr().add(t * acts.cols_padded + g * GROUP).cast()) };
            // x + 128 as u8, summed in 4 u64 lanes by vpsadbw against zero.
            let s = _mm256_sad_epu8(_mm256_xor_si256(v, flip), zero);
            let s = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
            let s = _mm_add_epi64(s, _mm_unpackhi_epi64(s, s));
            let sum = _mm_cvtsi128_si32(s) - 32 * 128;
            corr[t * groups + g] = factor * sum;
        }
    }
}

/// Walks an f32-output matmul `out[t][r]` (tokens x rows) in tiles: token chunks that keep
/// their activations in L2, then row tiles of `rr` rows, then token tiles of `tt` tokens.
/// `tile(rn, tn, r, t)` computes rows `r..r+rn` for tokens `t..t+tn`.
fn drive_matmul(
    rows: usize,
    tokens: usize,
    cols: usize,
    rr: usize,
    tt: usize,
    mut tile: impl FnMut(usize, usize, usize, usize),
) {
    let chunk = (F32_CHUNK_BYTES / (4 * cols.max(1))).max(tt) / tt * tt;
    let mut t0 = 0;
    while t0 < tokens {
        let t_end = (t0 + chunk).min(tokens);
        let mut r = 0;
        while r < rows {
            let rn = rr.min(rows - r);
            let mut t = t0;
            while t < t_end {
                let tn = tt.min(t_end - t);
                tile(rn, tn, r, t);
                t += tn;
            }
            r += rn;
        }
        t0 = t_end;
    }
}
