//! Client and server types come from one trait: mismatches do not compile.

#[test]
fn mismatches_between_client_server_and_service_do_not_compile() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
