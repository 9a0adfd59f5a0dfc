//! A small safe binding over libzmq 4.3.5: everything the node needs, nothing more.
//!
//! This module is the only place in the crate with `unsafe` code (the crate
//! denies `unsafe_code` everywhere else). It offers a
//! [`Context`], [`Socket`]s with typed options, [`Message`] frames with their
//! metadata (the authenticated `User-Id` of CURVE), [`poll`] over sockets and
//! plain file descriptors, and CURVE key generation with Z85 text encoding.
//!
//! Threading follows libzmq: a [`Context`] is shared freely between threads;
//! a [`Socket`] may be moved to another thread but never used from two at once
//! (it is `Send`, not `Sync`).

#![allow(unsafe_code)]
// A whole small binding: the node uses most of it, the project's tests and
// benchmarks (through `testkit::zmq`) the rest.
#![allow(dead_code)]

mod context;
mod curve;
mod error;
mod ffi;
mod message;
mod monitor;
mod poll;
mod socket;

pub use context::Context;
pub use curve::{curve_keypair, curve_public, z85_decode, z85_encode};
pub use error::{Error, Result};
pub use message::Message;
pub use monitor::{EventKind, MonitorEvent, protocol_error};
pub use poll::{PollItem, poll};
pub use socket::{SendFlags, Socket, SocketType};

/// The linked libzmq's version as `(major, minor, patch)`.
pub fn version() -> (i32, i32, i32) {
    let (mut major, mut minor, mut patch) = (0, 0, 0);
    // SAFETY: the three pointers are valid, distinct and writable for the call.
    unsafe { ffi::zmq_version(&mut major, &mut minor, &mut patch) };
    (major, minor, patch)
}

/// Whether the linked libzmq supports a capability such as `"curve"` or `"ipc"`.
pub fn has(capability: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(capability) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    unsafe { ffi::zmq_has(c.as_ptr()) == 1 }
}

#[cfg(test)]
mod tests;
