//! Every native kernel tier this CPU supports gives, end to end, the same logits bits as the
//! scalar definition on every fixture and storage scheme (recorded in
//! tests/fixtures/digests.json). Under qemu (scripts/test-aarch64.sh) this covers each
//! aarch64 tier; natively, each x86 tier.

#[path = "../../engine/tests/common/mod.rs"]
mod common;

#[test]
fn every_available_tier_gives_the_recorded_bits() {
    let mut ran = Vec::new();
    for tier in saguaro_host::kernels::tiers() {
        if !(tier.available)() {
            continue;
        }
        let got = common::digests((tier.kernels)());
        common::check(tier.name, &got);
        ran.push(tier.name);
    }
    eprintln!("tiers checked: {ran:?}");
    assert!(ran.contains(&"scalar"));
}
