//! `sme` tier (FEAT_SME with FEAT_SME_I8I32): the prefill GEMM with int8 outer products.
//!
//! `smopa zaT.s, p/m, p/m, zn.b, zm.b` adds to every element (i, j) of the 32-bit tile T the
//! exact dot product of the 4 bytes i of `zn` and the 4 bytes j of `zm`. With V = SVL / 32
//! lanes, `zn` holds one chunk (4 k) of V tokens and `zm` V rows of an `r16k4` chunk, so
//! 16 / V tiles cover a row block x V tokens and one group is 8 chunks x 16 / V `smopa`.
//! After each group the tiles (int32 sums) are stored to memory with `str za[...]` (one
//! 64-byte line per token = the token's 16 rows); after a batch of groups the sums leave
//! streaming mode and get the f32 update of `common::fold` with NEON, in group order, so the
//! result is the scalar definition bit for bit. INT4 nibbles are unpacked in streaming mode
//! (`lsr`/`and`/`sub`).
//!
//! Supported streaming vector lengths: 128, 256 and 512 bits (V = 4, 8, 16). Longer ones,
//! calls with fewer than [`MIN_TOKENS`] tokens (decode), and a caller already in streaming
//! mode or with ZA live (SVCR != 0) use the `i8mm` kernel, as do all other entries.
//!
//! Streaming mode and ZA are entered (`smstart`) and left (`smstop`) inside one `asm!` block
//! that declares every vector and predicate register clobbered (entering and leaving
//! streaming mode zeroes them); ZA is off before (checked through SVCR) and after it, so no
//! lazy-save state (TPIDR2_EL0) is involved. SME2 (multi-vector instructions) is not used.
//!
//! Detection: `getauxval(AT_HWCAP2)` bits HWCAP2_SME (1 << 23) and HWCAP2_SME_I8I32
//! (1 << 26) (Linux `arch/arm64/include/uapi/asm/hwcap.h`; HWCAP2_SME2 would be 1 << 37), as
//! `is_aarch64_feature_detected!("sme")` is unstable in Rust 1.95.

use std::arch::aarch64::*;
use std::arch::asm;

use saguaro_engine::kernels::Kernels;
use saguaro_engine::quant::{QuantKind, CHUNK_K, GROUP, ROW_BLOCK};

use super::common::{f16x16, fold, zero_f32};
use super::driver::{self, Gemm, QuantTier};

pub const NAME: &str = "sme";

/// Fewer tokens than this go to the `i8mm` kernel (an outer product would waste most of ZA).
pub const MIN_TOKENS: usize = 4;

/// Groups whose int32 sums are kept per streaming-mode session.
const BATCH: usize = 16;
/// Largest supported tile width (SVL 512 bits).
const MAX_V: usize = 16;

const AT_HWCAP2: core::ffi::c_ulong = 26;
const HWCAP2_SME: u64 = 1 << 23;
const HWCAP2_SME_I8I32: u64 = 1 << 26;

extern "C" {
    fn getauxval(kind: core::ffi::c_ulong) -> core::ffi::c_ulong;
}

/// HWCAP2_SME and HWCAP2_SME_I8I32 from the kernel's auxiliary vector.
pub(super) fn hwcap_sme() -> bool {
    // SAFETY: `getauxval` (glibc, musl, bionic) only reads the process's auxiliary vector; it
    // returns 0 for unknown types.
    let caps = unsafe { getauxval(AT_HWCAP2) } as u64;
    caps & (HWCAP2_SME | HWCAP2_SME_I8I32) == HWCAP2_SME | HWCAP2_SME_I8I32
}

pub fn available() -> bool {
    super::i8mm::available() && hwcap_sme()
}

/// The table; the `i8mm` table when this CPU lacks the features (so an entry handed out
/// here can always run).
pub fn kernels() -> Kernels {
    if !available() {
        return super::i8mm::kernels();
    }
    Kernels { tier: NAME, gemm_q8: driver::gemm_q8::<Sme>, gemm_q4: driver::gemm_q4::<Sme>, ..super::i8mm::kernels() }
}

/// Streaming vector length in bytes.
///
/// # Safety
/// FEAT_SME present.
#[inline]
pub(super) unsafe fn svl_bytes() -> usize {
    let svl: usize;
    // SAFETY: RDSVL is an SME instruction (present: caller), usable outside streaming mode;
    // it only writes the output register. Not `pure`: the length can change between calls
    // (`prctl(PR_SME_SET_VL)`), so the compiler must not merge or hoist reads.
    unsafe {
        asm!(".arch_extension sme", "rdsvl {0}, #1", out(reg) svl, options(nomem, nostack, preserves_flags));
    }
    svl
}

/// The SVCR register (bit 0: streaming mode, bit 1: ZA on).
///
/// # Safety
/// FEAT_SME present.
#[inline]
unsafe fn svcr() -> u64 {
    let v: u64;
    // SAFETY: SVCR is readable at EL0 when SME is implemented (caller); output register only.
    unsafe {
        asm!(".arch_extension sme", "mrs {0}, svcr", out(reg) v, options(nomem, nostack, preserves_flags));
    }
    v
}

/// The tier's microkernels (the driver is `driver`).
pub(super) struct Sme;

impl QuantTier for Sme {
    fn available() -> bool {
        available()
    }

    /// Blocks of V tokens through ZA; small calls and unsupported vector lengths or states
    /// go to the `i8mm` kernel.
    ///
    /// # Safety
    /// SME (I8I32), I8MM and DotProd present; `g` from `Gemm::new`.
    unsafe fn gemm(g: &Gemm) {
        // SAFETY: SME present (caller).
        let (svl, state) = unsafe { (svl_bytes(), svcr()) };
        let v = svl / 4;
        if g.tokens < MIN_TOKENS || !matches!(v, 4 | 8 | 16) || state != 0 || g.nblocks == 0 {
            // SAFETY: I8MM and DotProd present (caller).
            return unsafe { super::i8mm::I8mm::gemm(g) };
        }
        let groups = g.groups;
        // Activations of one token block, packed for `zn`: [group][chunk][V tokens][4 k].
        let mut xpack = vec![0u8; groups * GROUP * v];
        let mut isum = [0i32; BATCH * MAX_V * ROW_BLOCK];
        let mut t0 = 0;
        while t0 < g.tokens {
            let tb = v.min(g.tokens - t0);
            pack(g, t0, tb, v, &mut xpack);
            for bi in 0..g.nblocks {
                let mut acc = [zero_f32(); MAX_V];
                let mut g0 = 0;
                while g0 < groups {
                    let n = BATCH.min(groups - g0);
                    // SAFETY: SME present and SVCR == 0 (checked above); V in {4, 8, 16}; the
                    // weights of groups g0..g0+n of row block `bi` and the packed activations of
                    // those groups are in bounds; `isum` holds n * tb * 16 <= BATCH * 16 * 16.
                    unsafe {
                        let wd = g.wdata(bi).add(g0 * g.group_bytes);
                        let xp = xpack.as_ptr().add(g0 * GROUP * v);
                        isums(g.kind, 16 / v, wd, xp, n, tb, isum.as_mut_ptr());
                    }
                    // SAFETY: scale reads inside row block `bi`'s `groups * 32` bytes; activation
                    // scales of tokens t0..t0+tb < tokens; `isum` reads below n * tb * 16.
                    unsafe {
                        let sp = g.wscales(bi);
                        let mut ws = [zero_f32(); BATCH];
                        for k in 0..n {
                            ws[k] = f16x16(sp.add((g0 + k) * ROW_BLOCK * 2));
                        }
                        for r in 0..tb {
                            let xs = g.xscales(t0 + r).add(g0);
                            for k in 0..n {
                                let s = vld1q_s32_x4(isum.as_ptr().add((k * tb + r) * ROW_BLOCK));
                                fold(&mut acc[r], &[s.0, s.1, s.2, s.3], &ws[k], *xs.add(k));
                            }
                        }
                    }
                    g0 += n;
                }
                for r in 0..tb {
                    // SAFETY: `t0 + r < tokens`, `bi < nblocks`.
                    unsafe { g.store(t0 + r, bi, &acc[r]) };
                }
            }
            t0 += tb;
        }
    }
}

/// Packs tokens `t0 .. t0 + tb` as `[group][chunk][v][4]` bytes, tokens `tb..v` zero.
fn pack(g: &Gemm, t0: usize, tb: usize, v: usize, xpack: &mut [u8]) {
    let chunks = g.groups * (GROUP / CHUNK_K);
    debug_assert_eq!(xpack.len(), chunks * v * CHUNK_K);
    for r in 0..v {
        if r < tb {
            // SAFETY: token `t0 + r < tokens` has `cols_padded = chunks * 4` bytes.
            let x = unsafe { std::slice::from_raw_parts(g.x(t0 + r) as *const u8, g.cols_padded) };
            for (c, q) in x.chunks_exact(CHUNK_K).enumerate() {
                xpack[(c * v + r) * CHUNK_K..][..CHUNK_K].copy_from_slice(q);
            }
        } else {
            for c in 0..chunks {
                xpack[(c * v + r) * CHUNK_K..][..CHUNK_K].fill(0);
            }
        }
    }
}

/// Streaming-mode int32 sums of `ng` groups for one row block: `out[k][r][row]` for group k,
/// token r < tb, row < 16.
///
/// # Safety
/// SME (I8I32) present, SVCR == 0, `16 / nt` equals SVL / 32; `w` readable for `ng` groups of
/// `kind`, `x` for `ng * 32 * SVL / 4` bytes, `out` writable for `ng * tb * 16` i32; tb >= 1.
unsafe fn isums(kind: QuantKind, nt: usize, w: *const u8, x: *const u8, ng: usize, tb: usize, out: *mut i32) {
    macro_rules! run {
        ($($body:literal),* ; $($store:literal),*) => {
            // SAFETY: SME with I8I32 is present and neither streaming mode nor ZA is active
            // (caller), so `smstart` enters both with ZA zeroed and `smstop` leaves both; every
            // Z/P register (zeroed by the mode changes) is declared clobbered and no vector
            // value lives across the block. Loads read `ng` groups of weights at `w` and
            // `ng * 8` vectors of activations at `x`; stores write `tb * 64` bytes per group
            // at `out`; all in bounds (caller). Only SVE instructions legal in streaming mode
            // are used.
            unsafe {
                asm!(
                    ".arch_extension sme",
                    "smstart",
                    "ptrue p0.b",
                    "2:",
                    "zero {{za}}",
                    $($body,)*
                    "mov w12, #0",
                    "mov {cnt}, {tb}",
                    "3:",
                    $($store,)*
                    "add w12, w12, #4",
                    "add {o}, {o}, #64",
                    "subs {cnt}, {cnt}, #1",
                    "b.ne 3b",
                    "subs {ng}, {ng}, #1",
                    "b.ne 2b",
                    "smstop",
                    w = inout(reg) w => _,
                    x = inout(reg) x => _,
                    o = inout(reg) out => _,
                    ng = inout(reg) ng => _,
                    tb = in(reg) tb,
                    cnt = out(reg) _,
                    out("x12") _,
                    out("v0") _, out("v1") _, out("v2") _, out("v3") _,
                    out("v4") _, out("v5") _, out("v6") _, out("v7") _,
                    out("v8") _, out("v9") _, out("v10") _, out("v11") _,
                    out("v12") _, out("v13") _, out("v14") _, out("v15") _,
                    out("v16") _, out("v17") _, out("v18") _, out("v19") _,
                    out("v20") _, out("v21") _, out("v22") _, out("v23") _,
                    out("v24") _, out("v25") _, out("v26") _, out("v27") _,
                    out("v28") _, out("v29") _, out("v30") _, out("v31") _,
                    out("p0") _, out("p1") _, out("p2") _, out("p3") _,
                    out("p4") _, out("p5") _, out("p6") _, out("p7") _,
                    out("p8") _, out("p9") _, out("p10") _, out("p11") _,
                    out("p12") _, out("p13") _, out("p14") _, out("p15") _,
                    out("ffr") _,
                    options(nostack),
                );
            }
        };
    }
    // Stores of token w12 / 4's 16 rows: tile t slice w12 / 4 = ZA array vector w12 + t.
    match (kind, nt) {
        // INT8: per chunk, V tokens' 4 k in z0 and the chunk's rows in z1..z4.
        (QuantKind::Q8, 1) => run!(
            ".rept 8",
            "ld1b {{z0.b}}, p0/z, [{x}]",
            "ld1b {{z1.b}}, p0/z, [{w}]",
            "smopa za0.s, p0/m, p0/m, z0.b, z1.b",
            "addvl {w}, {w}, #1",
            "addvl {x}, {x}, #1",
            ".endr";
            "str za[w12, 0], [{o}]"
        ),
        (QuantKind::Q8, 2) => run!(
            ".rept 8",
            "ld1b {{z0.b}}, p0/z, [{x}]",
            "ld1b {{z1.b}}, p0/z, [{w}]",
            "ld1b {{z2.b}}, p0/z, [{w}, #1, mul vl]",
            "smopa za0.s, p0/m, p0/m, z0.b, z1.b",
            "smopa za1.s, p0/m, p0/m, z0.b, z2.b",
            "addvl {w}, {w}, #2",
            "addvl {x}, {x}, #1",
            ".endr";
            "str za[w12, 0], [{o}]",
            "str za[w12, 1], [{o}, #1, mul vl]"
        ),
        (QuantKind::Q8, _) => run!(
            ".rept 8",
            "ld1b {{z0.b}}, p0/z, [{x}]",
            "ld1b {{z1.b}}, p0/z, [{w}]",
            "ld1b {{z2.b}}, p0/z, [{w}, #1, mul vl]",
            "ld1b {{z3.b}}, p0/z, [{w}, #2, mul vl]",
            "ld1b {{z4.b}}, p0/z, [{w}, #3, mul vl]",
            "smopa za0.s, p0/m, p0/m, z0.b, z1.b",
            "smopa za1.s, p0/m, p0/m, z0.b, z2.b",
            "smopa za2.s, p0/m, p0/m, z0.b, z3.b",
            "smopa za3.s, p0/m, p0/m, z0.b, z4.b",
            "addvl {w}, {w}, #4",
            "addvl {x}, {x}, #1",
            ".endr";
            "str za[w12, 0], [{o}]",
            "str za[w12, 1], [{o}, #1, mul vl]",
            "str za[w12, 2], [{o}, #2, mul vl]",
            "str za[w12, 3], [{o}, #3, mul vl]"
        ),
        // INT4: chunk c (low nibbles, activations z0) and chunk c + 4 (high nibbles,
        // activations z5) from the same bytes; nibble n -> n - 8.
        (QuantKind::Q4, 1) => run!(
            ".rept 4",
            "ld1b {{z0.b}}, p0/z, [{x}]",
            "ld1b {{z5.b}}, p0/z, [{x}, #4, mul vl]",
            "ld1b {{z1.b}}, p0/z, [{w}]",
            "lsr z2.b, z1.b, #4",
            "and z1.b, z1.b, #0xf",
            "sub z1.b, z1.b, #8",
            "sub z2.b, z2.b, #8",
            "smopa za0.s, p0/m, p0/m, z0.b, z1.b",
            "smopa za0.s, p0/m, p0/m, z5.b, z2.b",
            "addvl {w}, {w}, #1",
            "addvl {x}, {x}, #1",
            ".endr",
            "addvl {x}, {x}, #4";
            "str za[w12, 0], [{o}]"
        ),
        (QuantKind::Q4, 2) => run!(
            ".rept 4",
            "ld1b {{z0.b}}, p0/z, [{x}]",
            "ld1b {{z5.b}}, p0/z, [{x}, #4, mul vl]",
            "ld1b {{z1.b}}, p0/z, [{w}]",
            "ld1b {{z3.b}}, p0/z, [{w}, #1, mul vl]",
            "lsr z2.b, z1.b, #4",
            "lsr z4.b, z3.b, #4",
            "and z1.b, z1.b, #0xf",
            "and z3.b, z3.b, #0xf",
            "sub z1.b, z1.b, #8",
            "sub z2.b, z2.b, #8",
            "sub z3.b, z3.b, #8",
            "sub z4.b, z4.b, #8",
            "smopa za0.s, p0/m, p0/m, z0.b, z1.b",
            "smopa za1.s, p0/m, p0/m, z0.b, z3.b",
            "smopa za0.s, p0/m, p0/m, z5.b, z2.b",
            "smopa za1.s, p0/m, p0/m, z5.b, z4.b",
            "addvl {w}, {w}, #2",
            "addvl {x}, {x}, #1",
            ".endr",
            "addvl {x}, {x}, #4";
            "str za[w12, 0], [{o}]",
            "str za[w12, 1], [{o}, #1, mul vl]"
        ),
        (QuantKind::Q4, _) => run!(
            ".rept 4",
            "ld1b {{z0.b}}, p0/z, [{x}]",
            "ld1b {{z5.b}}, p0/z, [{x}, #4, mul vl]",
            "ld1b {{z1.b}}, p0/z, [{w}]",
            "ld1b {{z3.b}}, p0/z, [{w}, #1, mul vl]",
            "ld1b {{z6.b}}, p0/z, [{w}, #2, mul vl]",
            "ld1b {{z8.b}}, p0/z, [{w}, #3, mul vl]",
            "lsr z2.b, z1.b, #4",
            "lsr z4.b, z3.b, #4",
            "lsr z7.b, z6.b, #4",
            "lsr z9.b, z8.b, #4",
            "and z1.b, z1.b, #0xf",
            "and z3.b, z3.b, #0xf",
            "and z6.b, z6.b, #0xf",
            "and z8.b, z8.b, #0xf",
            "sub z1.b, z1.b, #8",
            "sub z2.b, z2.b, #8",
            "sub z3.b, z3.b, #8",
            "sub z4.b, z4.b, #8",
            "sub z6.b, z6.b, #8",
            "sub z7.b, z7.b, #8",
            "sub z8.b, z8.b, #8",
            "sub z9.b, z9.b, #8",
            "smopa za0.s, p0/m, p0/m, z0.b, z1.b",
            "smopa za1.s, p0/m, p0/m, z0.b, z3.b",
            "smopa za2.s, p0/m, p0/m, z0.b, z6.b",
            "smopa za3.s, p0/m, p0/m, z0.b, z8.b",
            "smopa za0.s, p0/m, p0/m, z5.b, z2.b",
            "smopa za1.s, p0/m, p0/m, z5.b, z4.b",
            "smopa za2.s, p0/m, p0/m, z5.b, z7.b",
            "smopa za3.s, p0/m, p0/m, z5.b, z9.b",
            "addvl {w}, {w}, #4",
            "addvl {x}, {x}, #1",
            ".endr",
            "addvl {x}, {x}, #4";
            "str za[w12, 0], [{o}]",
            "str za[w12, 1], [{o}, #1, mul vl]",
            "str za[w12, 2], [{o}, #2, mul vl]",
            "str za[w12, 3], [{o}, #3, mul vl]"
        ),
    }
}
