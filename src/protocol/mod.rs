//! The wire protocol: names, message types and their binary encoding.
//!
//! Every Bilateral message is one ZeroMQ frame whose layout is specified in
//! `PROTOCOL.md`; this module is the executable form of that document. It does
//! no I/O and keeps no state: [`decode`] turns untrusted bytes into a borrowed
//! [`Envelope`] or a [`DecodeError`], never panicking and never allocating more
//! than the input, and [`Message::encode`] writes a frame.

mod codec;
mod message;
mod name;

pub use codec::{DecodeError, decode};
pub use message::{
    Cast, Envelope, Join, Message, PartReason, Reject, RejectCode, Reply, ReplyStatus, Request,
    Security, Welcome,
};
pub use name::{MethodName, NameError, NodeName};

/// The framing version carried in the first byte of every frame.
pub const WIRE_VERSION: u8 = 1;

/// The lowest protocol version this implementation speaks.
pub const MIN_PROTOCOL_VERSION: u8 = 1;

/// The highest protocol version this implementation speaks.
pub const MAX_PROTOCOL_VERSION: u8 = 1;

/// Bytes of the fixed header that starts every frame.
pub const HEADER_LEN: usize = 10;

#[cfg(test)]
mod tests;
