//! The protocol's message types, borrowed from the frame they were decoded from.

/// A decoded frame: who sent it (which incarnation) and what it says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The sender's incarnation: a random value chosen at every start.
    pub incarnation: u64,
    /// The message itself.
    pub message: Message<'a>,
}

/// Every message of protocol version 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// Connecting side → listener: please admit me.
    Join(Join<'a>),
    /// Listener → connecting side: admitted.
    Welcome(Welcome<'a>),
    /// Either side: refused, with a reason.
    Reject(Reject<'a>),
    /// Heartbeat that asks for a [`Message::Pong`].
    Ping {
        /// Echoed in the pong, to measure the round trip.
        nonce: u64,
    },
    /// Answer to a ping.
    Pong {
        /// The nonce of the ping being answered.
        nonce: u64,
    },
    /// The sender ends the session.
    Part(PartReason),
    /// A call that expects a [`Message::Reply`].
    Request(Request<'a>),
    /// The answer to a request.
    Reply(Reply<'a>),
    /// A one-way call: no reply.
    Cast(Cast<'a>),
    /// Asks the receiver to accept a byte stream for one of its services.
    Open(Open<'a>),
    /// Bytes of a stream.
    Data(Data<'a>),
    /// One end's view of a stream: what it sent, what it lets the other end
    /// send, whether it finished or stopped reading.
    Status(Status),
    /// Ends a stream abruptly, or refuses an OPEN.
    Reset(Reset<'a>),
    /// A piece of a message too large for one frame.
    Fragment(Fragment<'a>),
    /// Asks the receiver to acknowledge the bulk bytes sent on this link so far.
    Mark {
        /// Bulk bytes (DATA and FRAGMENT frames) the sender has sent on this link.
        offset: u64,
    },
    /// Answer to a MARK.
    Ack {
        /// The offset of the MARK being answered.
        offset: u64,
    },
}

/// The security mechanism a node runs; both ends of a session must agree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    /// No encryption (ZeroMQ NULL mechanism).
    Null,
    /// ZeroMQ CURVE: encrypted, and the node name is its public key.
    Curve,
}

impl Security {
    /// The mechanism's code on the wire.
    pub fn code(self) -> u8 {
        match self {
            Security::Null => 0,
            Security::Curve => 1,
        }
    }
}

/// JOIN: sent by the connecting side on its DEALER, first thing and on every retry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Join<'a> {
    /// Lowest protocol version the sender speaks.
    pub min_version: u8,
    /// Highest protocol version the sender speaks.
    pub max_version: u8,
    /// The sender's security mechanism, as its wire code (see [`Security`]);
    /// kept raw so a node can refuse a mechanism it does not know instead of
    /// dropping the JOIN.
    pub security: u8,
    /// The sender's heartbeat interval in milliseconds.
    pub heartbeat_ms: u32,
    /// The network the sender belongs to; must equal the listener's.
    pub network: &'a str,
    /// The sender's node name; must equal its routing id.
    pub name: &'a str,
    /// The name the sender expects the listener to have.
    pub target: &'a str,
}

/// WELCOME: the listener admits the sender of a JOIN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Welcome<'a> {
    /// The protocol version chosen for the session.
    pub version: u8,
    /// The listener's heartbeat interval in milliseconds.
    pub heartbeat_ms: u32,
    /// The incarnation of the JOIN being answered.
    pub joiner_incarnation: u64,
    /// The listener's node name.
    pub name: &'a str,
}

/// Why a JOIN (or a message outside a session) was refused. The numbers are on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectCode {
    /// The JOIN named another network.
    WrongNetwork,
    /// A live session already holds this name with another incarnation.
    NameTaken,
    /// No protocol version in common.
    UnsupportedVersion,
    /// The JOIN came from a node with the listener's own name.
    JoiningItself,
    /// The sender has no session with the listener: it must JOIN again.
    NotJoined,
    /// The name in the JOIN is invalid or differs from the sender's routing id.
    BadName,
    /// One side runs CURVE and the other does not.
    SecurityMismatch,
    /// The JOIN was meant for a node with another name.
    WrongPeer,
    /// The listener is shutting down.
    ShuttingDown,
    /// CURVE: the sender's key is not allowed by the listener's access policy.
    Unauthorized,
    /// The ZeroMQ handshake failed (reported locally by the dialler; never
    /// sent on the wire).
    HandshakeFailed,
    /// A code this implementation does not know (from a newer peer).
    Other(u8),
}

impl RejectCode {
    /// The code's byte on the wire.
    pub fn code(self) -> u8 {
        match self {
            RejectCode::WrongNetwork => 1,
            RejectCode::NameTaken => 2,
            RejectCode::UnsupportedVersion => 3,
            RejectCode::JoiningItself => 4,
            RejectCode::NotJoined => 5,
            RejectCode::BadName => 6,
            RejectCode::SecurityMismatch => 7,
            RejectCode::WrongPeer => 8,
            RejectCode::ShuttingDown => 9,
            RejectCode::Unauthorized => 10,
            RejectCode::HandshakeFailed => 11,
            RejectCode::Other(c) => c,
        }
    }

    /// The code for a byte read from the wire.
    pub fn from_code(code: u8) -> Self {
        match code {
            1 => RejectCode::WrongNetwork,
            2 => RejectCode::NameTaken,
            3 => RejectCode::UnsupportedVersion,
            4 => RejectCode::JoiningItself,
            5 => RejectCode::NotJoined,
            6 => RejectCode::BadName,
            7 => RejectCode::SecurityMismatch,
            8 => RejectCode::WrongPeer,
            9 => RejectCode::ShuttingDown,
            10 => RejectCode::Unauthorized,
            11 => RejectCode::HandshakeFailed,
            c => RejectCode::Other(c),
        }
    }
}

/// REJECT: refuses a JOIN or tells a sender it has no session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject<'a> {
    /// Why.
    pub code: RejectCode,
    /// The incarnation being refused; other incarnations ignore the message.
    pub your_incarnation: u64,
    /// Lowest protocol version the refusing node speaks.
    pub min_version: u8,
    /// Highest protocol version the refusing node speaks.
    pub max_version: u8,
    /// Human-readable detail, for logs and error messages.
    pub detail: &'a str,
}

/// Why a node ends a session with PART. The numbers are on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartReason {
    /// The node is closing.
    Closing,
    /// The node's application disconnected from this peer.
    Disconnect,
    /// A reason this implementation does not know.
    Other(u8),
}

impl PartReason {
    pub(crate) fn code(self) -> u8 {
        match self {
            PartReason::Closing => 0,
            PartReason::Disconnect => 1,
            PartReason::Other(c) => c,
        }
    }

    pub(crate) fn from_code(code: u8) -> Self {
        match code {
            0 => PartReason::Closing,
            1 => PartReason::Disconnect,
            c => PartReason::Other(c),
        }
    }
}

/// REQUEST: call `method` with MessagePack `args`; answer with a REPLY of the same id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// Chosen by the caller, unique among its pending calls.
    pub request_id: u64,
    /// Milliseconds the caller will wait, from when it sent the request.
    pub timeout_ms: u32,
    /// The method name.
    pub method: &'a str,
    /// The arguments, MessagePack (opaque to the protocol).
    pub args: &'a [u8],
}

/// How a request ended on the callee. The numbers are on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyStatus {
    /// The handler returned a value (payload: MessagePack).
    Ok,
    /// The handler returned an error (payload: UTF-8 text).
    HandlerError,
    /// No handler is registered under that name.
    UnknownMethod,
    /// The arguments did not decode into the handler's argument type.
    BadArguments,
    /// The callee's handler queue is full.
    Overloaded,
    /// The callee is shutting down and will not run the handler.
    ShuttingDown,
    /// The handler returned a typed error (payload: MessagePack array of
    /// its message, a str, and the error value encoded as MessagePack, a bin).
    TypedError,
    /// The method is in the built-in services' namespace (`bilateral.…`)
    /// and the callee does not run that service (payload: its name).
    NoService,
    /// The request, or the reply the handler computed, is larger than the
    /// callee's `max_message_size` (payload: UTF-8 text with both sizes).
    TooLarge,
    /// A status this implementation does not know.
    Other(u8),
}

impl ReplyStatus {
    pub(crate) fn code(self) -> u8 {
        match self {
            ReplyStatus::Ok => 0,
            ReplyStatus::HandlerError => 1,
            ReplyStatus::UnknownMethod => 2,
            ReplyStatus::BadArguments => 3,
            ReplyStatus::Overloaded => 4,
            ReplyStatus::ShuttingDown => 5,
            ReplyStatus::TypedError => 6,
            ReplyStatus::NoService => 7,
            ReplyStatus::TooLarge => 8,
            ReplyStatus::Other(c) => c,
        }
    }

    pub(crate) fn from_code(code: u8) -> Self {
        match code {
            0 => ReplyStatus::Ok,
            1 => ReplyStatus::HandlerError,
            2 => ReplyStatus::UnknownMethod,
            3 => ReplyStatus::BadArguments,
            4 => ReplyStatus::Overloaded,
            5 => ReplyStatus::ShuttingDown,
            6 => ReplyStatus::TypedError,
            7 => ReplyStatus::NoService,
            8 => ReplyStatus::TooLarge,
            c => ReplyStatus::Other(c),
        }
    }
}

/// REPLY: the outcome of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply<'a> {
    /// The id of the request being answered.
    pub request_id: u64,
    /// How it ended.
    pub status: ReplyStatus,
    /// MessagePack value for `Ok`, UTF-8 detail otherwise.
    pub payload: &'a [u8],
}

/// CAST: run `method` with MessagePack `args`; nothing comes back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cast<'a> {
    /// The method name.
    pub method: &'a str,
    /// The arguments, MessagePack (opaque to the protocol).
    pub args: &'a [u8],
}

/// OPEN: please run stream service `service` with `init` and accept a stream.
///
/// Accepted by a [`Status`] from the acceptor, refused by a [`Reset`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Open<'a> {
    /// Chosen by the opener, unique among the streams it opened.
    pub stream_id: u64,
    /// Milliseconds the opener waits for the answer, from when it sent OPEN.
    pub timeout_ms: u32,
    /// Bytes the acceptor may send before the opener grants more.
    pub window: u32,
    /// The service name.
    pub service: &'a str,
    /// The opener's init data, MessagePack (opaque to the protocol).
    pub init: &'a [u8],
}

/// DATA: the stream bytes at `offset..offset + payload.len()`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Data<'a> {
    /// The opener's id of the stream.
    pub stream_id: u64,
    /// Whether the sender of this frame opened the stream.
    pub from_opener: bool,
    /// Position of the first byte in the sender's direction of the stream.
    pub offset: u64,
    /// The bytes.
    pub payload: &'a [u8],
}

/// STATUS: the sender's side of a stream. Every field is absolute, so a
/// STATUS can be repeated or lost without harm; the next one says it all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// The opener's id of the stream.
    pub stream_id: u64,
    /// Whether the sender of this frame opened the stream.
    pub from_opener: bool,
    /// Bytes the sender has sent in its direction so far.
    pub sent: u64,
    /// The receiver of this frame may send bytes up to this offset.
    pub limit: u64,
    /// The sender has finished writing: `sent` is the final length.
    pub fin: bool,
    /// The sender reads no more: the receiver of this frame should stop writing.
    pub stop: bool,
    /// The sender asks for the receiver's STATUS in return.
    pub probe: bool,
}

/// Why a stream was reset or refused. The numbers are on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResetCode {
    /// No stream service has that name.
    UnknownService,
    /// The service's handler refused the stream.
    Refused,
    /// The init data did not decode into the service's type.
    BadInit,
    /// Too many streams, or a queue is full.
    Overloaded,
    /// The application abandoned the stream (dropped it unfinished).
    Cancelled,
    /// The opener gave up waiting for the answer to its OPEN.
    Timeout,
    /// The stream is not known (any more) to the sender of the RESET.
    UnknownStream,
    /// The other end sent beyond its credit, or after it finished.
    FlowControl,
    /// Stream bytes were lost in transit.
    DataLost,
    /// The node is shutting down.
    ShuttingDown,
    /// A code this implementation does not know.
    Other(u8),
}

impl ResetCode {
    /// The code's byte on the wire.
    pub fn code(self) -> u8 {
        match self {
            ResetCode::UnknownService => 1,
            ResetCode::Refused => 2,
            ResetCode::BadInit => 3,
            ResetCode::Overloaded => 4,
            ResetCode::Cancelled => 5,
            ResetCode::Timeout => 6,
            ResetCode::UnknownStream => 7,
            ResetCode::FlowControl => 8,
            ResetCode::DataLost => 9,
            ResetCode::ShuttingDown => 10,
            ResetCode::Other(c) => c,
        }
    }

    /// The code for a byte read from the wire.
    pub fn from_code(code: u8) -> Self {
        match code {
            1 => ResetCode::UnknownService,
            2 => ResetCode::Refused,
            3 => ResetCode::BadInit,
            4 => ResetCode::Overloaded,
            5 => ResetCode::Cancelled,
            6 => ResetCode::Timeout,
            7 => ResetCode::UnknownStream,
            8 => ResetCode::FlowControl,
            9 => ResetCode::DataLost,
            10 => ResetCode::ShuttingDown,
            c => ResetCode::Other(c),
        }
    }
}

/// RESET: the stream is over, in both directions; or the OPEN is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reset<'a> {
    /// The opener's id of the stream.
    pub stream_id: u64,
    /// Whether the sender of this frame opened the stream.
    pub from_opener: bool,
    /// Why.
    pub code: ResetCode,
    /// Human-readable detail (a refusal's reason).
    pub detail: &'a str,
}

/// FRAGMENT: bytes `offset..offset + payload.len()` of a `total`-byte frame
/// (a REQUEST, REPLY or CAST) that was too large to send whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fragment<'a> {
    /// Chosen by the sender, unique among its transfers to this peer.
    pub transfer_id: u64,
    /// Length of the whole frame.
    pub total: u64,
    /// Position of this piece.
    pub offset: u64,
    /// The piece.
    pub payload: &'a [u8],
}
