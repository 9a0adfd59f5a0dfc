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

#[cfg(test)]
pub use codec::DecodeError;
pub use codec::{
    CallFrame, call_id_of, decode, request_id_of, set_request_timeout, write_data_header,
};
pub use message::{
    Cast, Data, Envelope, Fragment, Join, Message, Open, PartReason, Reject, RejectCode, Reply,
    ReplyStatus, Request, Reset, ResetCode, Security, Status, Welcome,
};
pub use name::{MethodName, NameError, NodeName, RESERVED_PREFIX, reserved_service};

/// The framing version carried in the first byte of every frame.
pub const WIRE_VERSION: u8 = 1;

/// The lowest protocol version this implementation speaks.
pub const MIN_PROTOCOL_VERSION: u8 = 1;

/// The highest protocol version this implementation speaks.
pub const MAX_PROTOCOL_VERSION: u8 = 1;

/// Bytes of the fixed header that starts every frame.
pub const HEADER_LEN: usize = 10;

/// Bytes in front of a DATA frame's payload.
pub const DATA_HEADER_LEN: usize = HEADER_LEN + 17;

/// Bytes in front of a FRAGMENT frame's payload.
pub const FRAGMENT_HEADER_LEN: usize = HEADER_LEN + 24;

/// The largest payload of one DATA or FRAGMENT frame a node may send.
pub const MAX_CHUNK: usize = 1024 * 1024;

/// The largest frame a node may send; anything larger is a protocol
/// violation, and libzmq drops the connection that carries it.
pub const MAX_FRAME: usize = MAX_CHUNK + 1024;

#[cfg(test)]
mod tests;
