//! The errors of the public API.

use crate::core::{LostReason, Rejection};
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
        /// libzmq's error.
        source: crate::zmq::Error,
    },
    /// libzmq failed.
    #[error("zeromq: {0}")]
    Zmq(#[from] crate::zmq::Error),
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
    /// The peer refused to let this node join.
    #[error("peer {peer:?} refused the join: {rejection}")]
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
    /// A bounded queue is full; try again later.
    #[error("overloaded: {0}")]
    Overloaded(&'static str),
}

/// Which side was overloaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// This node: its command queue, send queue or pending-call table was full.
    Local,
    /// The peer: its handler queue was full.
    Remote,
}

/// Why one targeted peer produced no reply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The peer's handler returned an error (its message).
    #[error("remote handler failed: {0}")]
    Remote(String),
    /// The peer has no handler registered under that method name.
    #[error("unknown method")]
    UnknownMethod,
    /// The peer could not decode the arguments into its handler's type.
    #[error("bad arguments: {0}")]
    BadArguments(String),
    /// The reply could not be decoded into the type the caller asked for.
    #[error("bad reply: {0}")]
    BadReply(String),
    /// A queue on one side was full.
    #[error("overloaded ({0:?} side)")]
    Overloaded(Side),
    /// No reply by the deadline.
    #[error("timed out")]
    Timeout,
    /// The session ended before the reply came.
    #[error("peer lost: {0}")]
    PeerLost(LostReason),
    /// The peer is known but has no session now (joining, backing off, or refused us).
    #[error("peer unreachable{}", .0.as_ref().map(|r| format!(" (last refusal: {r})")).unwrap_or_default())]
    Unreachable(Option<Rejection>),
    /// No peer of that name is known to this node.
    #[error("unknown peer")]
    UnknownPeer,
    /// The peer is shutting down and did not run the handler.
    #[error("peer is shutting down")]
    ShuttingDown,
    /// This node closed while the call was pending.
    #[error("node closed")]
    Closed,
    /// The call could not be made here: an invalid method name, or
    /// arguments that cannot be encoded.
    #[error("invalid call: {0}")]
    Local(String),
}
