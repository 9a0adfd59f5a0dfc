//! The errors of the public API: [`Error`] for node-level operations; the
//! outcomes of calls and streams ([`CallError`], [`StreamError`], ...) are
//! the core's, re-exported here.

use crate::core::Rejection;
pub(crate) use crate::core::encode_typed_error;
pub use crate::core::{CallError, RemoteError, Side, StreamError};
use crate::protocol::NameError;

/// An error of a node-level operation (start, connect, register, ...).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A node, peer or method name is not acceptable.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The refused name.
        name: String,
        /// What is wrong with it.
        reason: NameError,
    },
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A listen endpoint could not be bound.
    #[error("cannot bind {endpoint}: {source}")]
    Bind {
        /// The endpoint.
        endpoint: String,
        /// Why.
        source: SocketError,
    },
    /// The ZeroMQ layer failed.
    #[error("zeromq: {0}")]
    Socket(SocketError),
    /// The operation needs a thread and the system refused to start one.
    #[error("cannot start thread: {0}")]
    Thread(std::io::Error),
    /// The node is closed.
    #[error("node is closed")]
    Closed,
    /// The arguments could not be encoded as MessagePack.
    #[error("cannot encode arguments: {0}")]
    Encode(String),
    /// No peer of that name is known to this node.
    #[error("unknown peer {0:?}")]
    UnknownPeer(String),
    /// A node cannot connect to itself.
    #[error("a node cannot connect to itself")]
    SelfConnect,
    /// The peer refused to let this node join, or the connection's own
    /// handshake showed that it cannot (CURVE on one side only, a wrong key).
    #[error("cannot join peer {peer:?}: {rejection}")]
    Rejected {
        /// The refusing peer.
        peer: String,
        /// Its reason.
        rejection: Rejection,
    },
    /// A wait ended at its deadline.
    #[error("timed out")]
    Timeout,
    /// A CURVE key or key file is not usable.
    #[error("key: {0}")]
    Key(#[from] crate::security::KeyError),
    /// The operation needs CURVE mode.
    #[error("the node does not run CURVE")]
    NotCurve,
    /// A message is larger than the node's `max_message_size`.
    #[error("message of {size} bytes is larger than max_message_size ({limit})")]
    TooLarge {
        /// The message's size on the wire.
        size: usize,
        /// The node's `max_message_size`.
        limit: usize,
    },
    /// A bounded queue is full; try again later.
    #[error("overloaded: {0}")]
    Overloaded(&'static str),
}

/// An error of the ZeroMQ layer under the node: libzmq's `errno` and its
/// message.
#[derive(Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SocketError(crate::zmq::Error);

impl SocketError {
    /// libzmq's `errno` value.
    pub fn errno(&self) -> i32 {
        self.0.errno()
    }
}

impl std::fmt::Debug for SocketError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SocketError({}: {})", self.0.errno(), self.0)
    }
}

impl From<crate::zmq::Error> for SocketError {
    fn from(e: crate::zmq::Error) -> Self {
        SocketError(e)
    }
}

impl From<crate::zmq::Error> for Error {
    fn from(e: crate::zmq::Error) -> Self {
        Error::Socket(SocketError(e))
    }
}
