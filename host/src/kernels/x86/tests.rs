//! What only the x86 tiers have: their order and selection, and AVX-512 as the best tier on
//! a CPU that has it. Every kernel check runs for every tier in `../tier_tests.rs`.

#[test]
fn tiers_are_ordered_and_selectable() {
    let names: Vec<&str> = super::tiers().iter().map(|t| t.name).collect();
    assert_eq!(names, ["avx2", "avxvnni", "avx512"]);
    for tier in super::tiers() {
        match super::super::tier_by_name(tier.name) {
            Ok(t) => {
                assert!((t.available)());
                assert_eq!((t.kernels)().tier, tier.name);
            }
            Err(_) => assert!(!(tier.available)()),
        }
    }
    if std::arch::is_x86_feature_detected!("avx512vnni") && std::arch::is_x86_feature_detected!("avx512bw") {
        let t = super::super::tier_by_name("avx512").expect("avx512 tier on this CPU");
        assert_eq!((t.kernels)().tier, "avx512");
        assert_eq!(super::super::best().tier, "avx512");
    }
}
