//! Builds libzmq 4.3.5 from source with CURVE support through libsodium.
//!
//! `libsodium-sys-stable` builds its bundled libsodium and publishes where it
//! put the headers and the static library as `DEP_SODIUM_INCLUDE` and
//! `DEP_SODIUM_LIB` (its `links = "sodium"` metadata). We hand those to
//! `zeromq-src`, which compiles libzmq with `ZMQ_HAVE_CURVE` and
//! `ZMQ_USE_LIBSODIUM` and emits the link directives for both libraries.

use std::env;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let include = env::var("DEP_SODIUM_INCLUDE")
        .expect("libsodium-sys-stable did not report DEP_SODIUM_INCLUDE");
    let lib =
        env::var("DEP_SODIUM_LIB").expect("libsodium-sys-stable did not report DEP_SODIUM_LIB");
    zeromq_src::Build::new()
        .with_libsodium(Some(zeromq_src::LibLocation::new(lib, include)))
        .build();
}
