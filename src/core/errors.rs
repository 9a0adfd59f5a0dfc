//! What calls and streams end with, as the core reports them: one
//! [`CallError`] per target without a reply, a [`StreamError`] for a
//! stream that broke, and the [`RemoteError`] a peer's handler returned.

use super::{LostReason, Rejection};

/// Which side of a call met a limit (a full queue, a message size).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// This node: its command queue, send queue, pending-call table or
    /// stream table was full.
    Local,
    /// The peer: its handler queue or stream table was full.
    Remote,
}

/// A peer handler's error, as the caller receives it.
///
/// Its [`message`](RemoteError::message) is always there; a handler that
/// returned [`HandlerError::typed`](crate::HandlerError::typed) also sent
/// the error value, which [`RemoteError::data`] decodes into the caller's
/// type for it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RemoteError {
    message: String,
    data: Option<Vec<u8>>,
}

impl RemoteError {
    /// An error with this message and no typed value.
    pub fn new(message: impl Into<String>) -> Self {
        RemoteError {
            message: message.into(),
            data: None,
        }
    }

    /// The handler's message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The typed error: `None` if the handler sent only a message, else the
    /// value decoded into `E` (or why it does not decode).
    pub fn data<E: serde::de::DeserializeOwned>(&self) -> Option<Result<E, String>> {
        let bytes = self.data.as_deref()?;
        Some(rmp_serde::from_slice(bytes).map_err(|e| e.to_string()))
    }

    /// From a TypedError payload: `(message, error)` as a MessagePack
    /// array of a str and a bin. A payload that is not that keeps its text.
    pub(crate) fn from_typed_payload(payload: &[u8]) -> Self {
        match rmp_serde::from_slice::<(String, serde_bytes::ByteBuf)>(payload) {
            Ok((message, data)) => RemoteError {
                message,
                data: Some(data.into_vec()),
            },
            Err(_) => RemoteError::new(String::from_utf8_lossy(payload)),
        }
    }
}

impl From<&str> for RemoteError {
    fn from(message: &str) -> Self {
        RemoteError::new(message)
    }
}

/// The payload of a TypedError reply (see [`RemoteError::from_typed_payload`]).
pub(crate) fn encode_typed_error(message: &str, data: &[u8]) -> Result<Vec<u8>, String> {
    rmp_serde::to_vec(&(message, serde_bytes::Bytes::new(data))).map_err(|e| e.to_string())
}

/// Why one targeted peer produced no reply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The peer's handler returned an error (or panicked): its message, and
    /// for a typed error the error itself.
    #[error("remote handler failed: {0}")]
    Remote(RemoteError),
    /// The peer has no handler registered under that method name.
    #[error("unknown method")]
    UnknownMethod,
    /// The method belongs to a built-in service (`bilateral.<service>.…`)
    /// that the peer does not run; the service's name.
    #[error("the peer does not run the {0} service")]
    NoService(String),
    /// The peer could not decode the arguments into its handler's type.
    #[error("bad arguments: {0}")]
    BadArguments(String),
    /// The reply could not be decoded into the type the caller asked for.
    #[error("bad reply: {0}")]
    BadReply(String),
    /// A queue on one side was full.
    #[error("overloaded ({0:?} side)")]
    Overloaded(Side),
    /// A message of the call was larger than a node's `max_message_size`:
    /// on the `Local` side, the request this node would have sent or the
    /// reply that reached it; on the `Remote` side, the request as the peer
    /// received it or the reply its handler computed.
    #[error("message larger than {} max_message_size", match .0 { Side::Local => "this node's", Side::Remote => "the peer's" })]
    TooLarge(Side),
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

/// Why a stream could not be opened, or why it failed.
///
/// Both halves of a failed stream report the same error; through
/// [`std::io::Read`] and [`std::io::Write`] it arrives as an
/// [`std::io::Error`] whose [`get_ref`](std::io::Error::get_ref) is this
/// value and whose kind is [`StreamError::io_kind`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// No peer of that name is known to this node.
    #[error("unknown peer")]
    UnknownPeer,
    /// The peer is known but has no session now.
    #[error("peer unreachable{}", .0.as_ref().map(|r| format!(" (last refusal: {r})")).unwrap_or_default())]
    Unreachable(Option<Rejection>),
    /// The peer has no stream service of that name.
    #[error("the peer has no stream service {0:?}")]
    UnknownService(String),
    /// The service's handler refused the stream (its reason).
    #[error("refused by the peer: {0}")]
    Refused(String),
    /// The peer could not decode the init data into its service's type.
    #[error("the peer could not decode the init data: {0}")]
    BadInit(String),
    /// No answer to the open request by the deadline.
    #[error("timed out")]
    Timeout,
    /// Too many streams, or a full queue, on one side.
    #[error("overloaded ({0:?} side)")]
    Overloaded(Side),
    /// The session with the peer ended.
    #[error("peer lost: {0}")]
    PeerLost(LostReason),
    /// The connection the stream travelled on broke while the session
    /// survived on another; what was in flight may be lost.
    #[error("the link carrying the stream was interrupted")]
    Interrupted,
    /// The other end abandoned the stream (dropped it without finishing).
    #[error("cancelled by the peer")]
    Cancelled,
    /// This end abandoned the stream.
    #[error("cancelled here")]
    CancelledHere,
    /// The peer reads no more: what is written now would be lost.
    #[error("the peer stopped reading")]
    Stopped,
    /// Bytes were lost in transit; the stream cannot continue.
    #[error("stream data lost in transit")]
    DataLost,
    /// The peer broke the stream protocol (sent beyond its credit, or after
    /// finishing).
    #[error("protocol violation by the peer")]
    Protocol,
    /// The peer is shutting down.
    #[error("the peer is shutting down")]
    ShuttingDown,
    /// This node closed.
    #[error("node closed")]
    Closed,
    /// The peer reset the stream with a code this node does not know.
    #[error("reset by the peer (code {code}): {detail}")]
    Reset {
        /// The wire code.
        code: u8,
        /// The peer's detail.
        detail: String,
    },
    /// The stream could not be opened here: an invalid service name, or init
    /// data that cannot be encoded.
    #[error("invalid stream: {0}")]
    Local(String),
}

impl StreamError {
    /// The [`std::io::ErrorKind`] this error takes in `Read` and `Write`.
    pub fn io_kind(&self) -> std::io::ErrorKind {
        use std::io::ErrorKind;
        match self {
            StreamError::Timeout => ErrorKind::TimedOut,
            StreamError::Stopped => ErrorKind::BrokenPipe,
            StreamError::Closed => ErrorKind::NotConnected,
            StreamError::PeerLost(_) | StreamError::Interrupted => ErrorKind::ConnectionAborted,
            StreamError::DataLost | StreamError::Protocol => ErrorKind::InvalidData,
            StreamError::UnknownPeer | StreamError::Unreachable(_) => ErrorKind::NotConnected,
            StreamError::UnknownService(_)
            | StreamError::Refused(_)
            | StreamError::BadInit(_)
            | StreamError::Overloaded(_) => ErrorKind::ConnectionRefused,
            StreamError::Local(_) => ErrorKind::InvalidInput,
            _ => ErrorKind::ConnectionReset,
        }
    }
}

impl From<StreamError> for std::io::Error {
    fn from(e: StreamError) -> Self {
        std::io::Error::new(e.io_kind(), e)
    }
}
