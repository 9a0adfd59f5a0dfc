//! Builds libzmq 4.3.5 from source with CURVE support through libsodium,
//! with one upstream bug fixed.
//!
//! `libsodium-sys-stable` builds its bundled libsodium and publishes where it
//! put the headers and the static library as `DEP_SODIUM_INCLUDE` and
//! `DEP_SODIUM_LIB` (its `links = "sodium"` metadata). We hand those to
//! `zeromq-src`, which compiles libzmq with `ZMQ_HAVE_CURVE` and
//! `ZMQ_USE_LIBSODIUM` and emits the link directives for both libraries.
//!
//! Then one file is patched (see [`HANDOVER_FIX`]): `session_base.cpp` is
//! recompiled from the copy of the sources `zeromq-src` leaves in `OUT_DIR`,
//! with exactly the definitions `zeromq-src` 0.3.6 uses, and its object
//! replaces the original one inside `libzmq.a` before anything links it.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The `zeromq-src` release whose build this script mirrors when it
/// recompiles one file; `Cargo.toml` pins it.
const ZEROMQ_SRC: &str = "0.3.6+4.3.5";

/// libzmq issues #3238 and #4407 (fix proposed in PR #3450, never merged):
/// with `ZMQ_ROUTER_HANDOVER`, the ROUTER terminates the pipe of the
/// connection whose routing id a newer connection took, but the session on
/// the other end of that pipe keeps its engine, and so its socket, for as
/// long as the ROUTER lives. If the old connection sent anything after the
/// handover the engine stops reading and never sees the peer close: one
/// descriptor in CLOSE-WAIT per handover, which anyone who can connect can
/// repeat until the process runs out of descriptors. The fix ends such a
/// session the way libzmq already ends raw (`ZMQ_STREAM`) sessions.
const HANDOVER_FIX: (&str, &str) = (
    "    if (!is_terminating () && options.raw_socket) {",
    "    //  Patched by bilateral's build.rs (libzmq #3238, #4407): an accepted
    //  ROUTER connection whose pipe the socket terminated (its routing id was
    //  handed over to a newer connection) is closed, not kept for ever.
    if (!is_terminating ()
        && (options.raw_socket
            || (socket_pipe && !_active && options.type == ZMQ_ROUTER))) {",
);

/// Records, before the pipe is forgotten, whether it was the socket's pipe.
const HANDOVER_FIX_PIPE: (&str, &str) = (
    "    if (pipe_ == _pipe) {\n        // If this is our current pipe, remove it",
    "    const bool socket_pipe = pipe_ == _pipe;\n    if (pipe_ == _pipe) {\n        // If this is our current pipe, remove it",
);

/// Set in the environment of the child that builds libzmq (see [`main`]).
const CHILD: &str = "BILATERAL_BUILD_LIBZMQ";

/// libzmq's C++ sources emit dozens of upstream warnings (unused parameters
/// and the like) that `cc` would pass on as this crate's build warnings, in
/// every crate that depends on it. `cc` takes compiler flags only from the
/// environment, so the build runs in a child process of this script whose
/// environment adds `-w`; its output, cargo's directives, goes to cargo as
/// this script's own.
fn main() {
    if env::var_os(CHILD).is_some() {
        return build_libzmq();
    }
    println!("cargo:rerun-if-changed=build.rs");
    let quiet = |var: &str| {
        let mut flags = env::var(var).unwrap_or_default();
        flags.push_str(" -w");
        flags
    };
    let me = env::current_exe().expect("the build script knows its own path");
    let status = Command::new(me)
        .env(CHILD, "1")
        .env("CXXFLAGS", quiet("CXXFLAGS"))
        .env("CFLAGS", quiet("CFLAGS"))
        .status()
        .expect("the build script can run itself");
    assert!(status.success(), "building libzmq failed");
}

fn build_libzmq() {
    let include = env::var("DEP_SODIUM_INCLUDE")
        .expect("libsodium-sys-stable did not report DEP_SODIUM_INCLUDE");
    let lib =
        env::var("DEP_SODIUM_LIB").expect("libsodium-sys-stable did not report DEP_SODIUM_LIB");
    zeromq_src::Build::new()
        .with_libsodium(Some(zeromq_src::LibLocation::new(&lib, &include)))
        .build();
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let target = env::var("TARGET").expect("cargo sets TARGET");
    match platform_defines(&target) {
        Some(defines) => patch_session_base(&out, Path::new(&include), defines),
        None => println!(
            "cargo:warning=bilateral: libzmq's ROUTER handover descriptor leak \
             (libzmq #3238) is not patched on {target}"
        ),
    }
}

/// The platform definitions `zeromq-src` 0.3.6 gives libzmq, for the
/// targets where this script knows them.
fn platform_defines(target: &str) -> Option<&'static [&'static str]> {
    if target.contains("linux") {
        Some(&[
            "ZMQ_HAVE_LINUX",
            "ZMQ_IOTHREAD_POLLER_USE_EPOLL",
            "ZMQ_POLL_BASED_ON_POLL",
            "ZMQ_HAVE_IPC",
            "HAVE_STRNLEN",
            "ZMQ_HAVE_UIO",
            "ZMQ_HAVE_STRUCT_SOCKADDR_UN",
        ])
    } else if target.contains("apple") || target.contains("freebsd") {
        Some(&[
            "ZMQ_IOTHREAD_POLLER_USE_KQUEUE",
            "ZMQ_POLL_BASED_ON_POLL",
            "HAVE_STRNLEN",
            "ZMQ_HAVE_UIO",
            "ZMQ_HAVE_IPC",
            "ZMQ_HAVE_STRUCT_SOCKADDR_UN",
        ])
    } else {
        None
    }
}

fn patch_session_base(out: &Path, sodium_include: &Path, platform: &[&str]) {
    let source = out.join("source");
    let original = source.join("src/session_base.cpp");
    let text = fs::read_to_string(&original).unwrap_or_else(|e| {
        panic!(
            "zeromq-src {ZEROMQ_SRC} left no {} ({e})",
            original.display()
        )
    });
    let mut patched = text;
    for (from, to) in [HANDOVER_FIX_PIPE, HANDOVER_FIX] {
        assert_eq!(
            patched.matches(from).count(),
            1,
            "session_base.cpp is not the libzmq 4.3.5 this patch was written for"
        );
        patched = patched.replacen(from, to, 1);
    }
    let dir = out.join("patched");
    fs::create_dir_all(&dir).expect("create OUT_DIR/patched");
    let file = dir.join("session_base.cpp");
    fs::write(&file, patched).expect("write the patched session_base.cpp");

    // The same compiler settings as zeromq-src's own build of this file.
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++11")
        .warnings(false)
        .flag_if_supported("-w")
        .include(source.join("include"))
        .include(source.join("src"))
        .include(out) // its empty platform.hpp
        .include(sodium_include)
        .define("ZMQ_BUILD_TESTS", "OFF")
        .define("ZMQ_USE_CV_IMPL_STL11", "1")
        .define("ZMQ_STATIC", "1")
        .define("ZMQ_USE_BUILTIN_SHA1", "1")
        .define("ZMQ_HAVE_WS", "1")
        .define("ZMQ_USE_LIBSODIUM", "1")
        .define("ZMQ_HAVE_CURVE", "1")
        .file(&file);
    for define in platform {
        build.define(define, "1");
    }
    let objects = build.compile_intermediates();
    let [object] = objects.as_slice() else {
        panic!("expected one object for session_base.cpp, got {objects:?}");
    };

    // Put it in place of the original member of libzmq.a, under its name.
    let archive = out.join("lib/libzmq.a");
    let ar = || build.get_archiver();
    let listing = run(ar().arg("t").arg(&archive));
    let member = listing
        .lines()
        .find(|m| m.ends_with("session_base.o"))
        .unwrap_or_else(|| panic!("no session_base.o in {}", archive.display()))
        .to_string();
    let renamed = dir.join(&member);
    fs::copy(object, &renamed).expect("copy the patched object");
    run(ar().arg("rs").arg(&archive).arg(&renamed));
    let listing = run(ar().arg("t").arg(&archive));
    assert_eq!(
        listing.lines().filter(|m| *m == member).count(),
        1,
        "libzmq.a must hold exactly one {member}"
    );
}

/// Runs a command to completion; its standard output.
fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
