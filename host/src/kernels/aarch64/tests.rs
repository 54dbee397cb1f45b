//! What only the aarch64 tiers have: their order (each needs the ones below), the tiers
//! detected on each CPU qemu emulates, and SME at every streaming vector length. Every kernel
//! check runs for every tier in `../tier_tests.rs`.
//!
//! Run under qemu-user once per emulated CPU (`scripts/test-aarch64.sh`): cortex-a53 (neon),
//! neoverse-n1 (+dotprod), neoverse-v1 (+i8mm), max (+sme).

use saguaro_engine::kernels::Kernels;
use saguaro_engine::quant::QuantKind;

use super::super::test_support::{bits, GemmCase};

#[test]
fn tiers_are_ordered_and_selectable() {
    let names: Vec<&str> = super::tiers().iter().map(|t| t.name).collect();
    assert_eq!(names, ["neon", "dotprod", "i8mm", "sme"]);
    let mut below_available = true;
    for tier in super::tiers() {
        // A tier falls back to the ones below it, so it needs them.
        assert!(below_available || !(tier.available)(), "{} available without the tiers below", tier.name);
        below_available = (tier.available)();
        match super::super::tier_by_name(tier.name) {
            Ok(t) => {
                assert!((t.available)());
                assert_eq!((t.kernels)().tier, tier.name);
            }
            Err(_) => assert!(!(tier.available)()),
        }
    }
    assert!((super::tiers()[0].available)(), "neon is always available on aarch64");
}

/// The tiers detected on each emulated CPU (the CPU name comes from `SAGUARO_QEMU_CPU`, set
/// by `scripts/test-aarch64.sh`, or `QEMU_CPU`; without either the test only prints them).
#[test]
fn detected_tiers_match_cpu() {
    let found: Vec<&str> = super::tiers().into_iter().filter(|t| (t.available)()).map(|t| t.name).collect();
    let cpu = std::env::var("SAGUARO_QEMU_CPU").or_else(|_| std::env::var("QEMU_CPU")).unwrap_or_default();
    let want: &[&str] = match cpu.split(',').next().unwrap_or("") {
        "cortex-a53" | "cortex-a57" | "cortex-a72" => &["neon"],
        "neoverse-n1" | "cortex-a76" | "cortex-a55" => &["neon", "dotprod"],
        "neoverse-v1" | "neoverse-n2" => &["neon", "dotprod", "i8mm"],
        "max" => &["neon", "dotprod", "i8mm", "sme"],
        _ => {
            eprintln!("aarch64 tiers on this CPU ({cpu:?}): {found:?}");
            return;
        }
    };
    assert_eq!(found, want, "tiers detected under {cpu}");
    assert_eq!(super::super::best().tier, *want.last().unwrap());
}

/// SME at every streaming vector length qemu offers: 128, 256, 512 bits (tile widths 4, 8,
/// 16) and 1024 / 2048 bits (not supported by the kernel: the i8mm fallback). The length is
/// set for this thread only (`prctl(PR_SME_SET_VL)`) and restored.
#[test]
fn sme_every_vector_length_matches_scalar() {
    if !super::sme::available() {
        return;
    }
    const PR_SME_SET_VL: i32 = 63;
    const PR_SME_GET_VL: i32 = 64;
    const PR_SME_VL_LEN_MASK: i32 = 0xffff;
    extern "C" {
        fn prctl(option: i32, ...) -> i32;
    }
    // SAFETY: PR_SME_GET_VL only reads this thread's SME vector length.
    let saved = unsafe { prctl(PR_SME_GET_VL) } & PR_SME_VL_LEN_MASK;
    assert!(saved > 0, "PR_SME_GET_VL failed");
    let sme = (super::tiers()[3].kernels)();
    for vl in [16u64, 32, 64, 128, 256] {
        // SAFETY: changes this thread's streaming vector length; no SME state is live here.
        let set = unsafe { prctl(PR_SME_SET_VL, vl) };
        if set < 0 || (set & PR_SME_VL_LEN_MASK) as u64 != vl {
            continue; // not offered by this CPU
        }
        // SAFETY: SME present (checked above).
        assert_eq!(unsafe { super::sme::svl_bytes() }, vl as usize);
        for (i, &(tokens, row_blocks, groups)) in
            [(4usize, 1usize, 1usize), (5, 2, 3), (9, 3, 2), (17, 2, 18), (33, 1, 5), (16, 2, 4)].iter().enumerate()
        {
            for kind in [QuantKind::Q8, QuantKind::Q4] {
                let case = GemmCase::new(kind, tokens, row_blocks, groups, vl * 100 + i as u64);
                let want = case.run(&Kernels::scalar(), 0..row_blocks);
                let got = case.run(&sme, 0..row_blocks);
                assert_eq!(bits(&got), bits(&want), "sme vl {vl} {kind:?} t{tokens} rb{row_blocks} g{groups}");
            }
        }
    }
    // SAFETY: as above.
    unsafe { prctl(PR_SME_SET_VL, saved as u64) };
}
