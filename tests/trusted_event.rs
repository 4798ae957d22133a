//! Misuse is unrepresentable: outside the reload code nothing can build a
//! `TrustedEvent`, and the hub accepts nothing else.

#[test]
fn only_the_reload_can_build_what_the_hub_publishes() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/compile_fail/*.rs");
}
