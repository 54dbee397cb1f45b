//! The portable kernels (scalar on native hosts, simd128 in wasm) give the recorded bits on
//! every fixture and storage scheme. See tests/common/mod.rs.

mod common;

#[test]
fn portable_kernels_give_the_recorded_bits() {
    let kernels = saguaro_engine::kernels::Kernels::portable();
    let got = common::digests(kernels);
    common::check(kernels.tier, &got);
}
