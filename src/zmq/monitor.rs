//! Socket monitor events: what libzmq reports about connections and handshakes.

use super::message::Message;

/// A socket event, read from a monitor socket (see [`super::Socket::monitor`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonitorEvent {
    /// What happened.
    pub kind: EventKind,
    /// The event's value: a file descriptor, an errno, a ZAP status code or a
    /// [`protocol_error`] code, depending on the kind.
    pub value: u32,
    /// The endpoint the event concerns.
    pub endpoint: String,
}

/// The kinds of monitor event (`ZMQ_EVENT_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventKind {
    /// A connection was established (connecting side).
    Connected,
    /// A connect is pending and will be retried.
    ConnectDelayed,
    /// A reconnect is scheduled.
    ConnectRetried,
    /// A bind succeeded.
    Listening,
    /// A bind failed.
    BindFailed,
    /// A connection was accepted (listening side).
    Accepted,
    /// Accepting a connection failed.
    AcceptFailed,
    /// A connection was closed.
    Closed,
    /// Closing a connection failed.
    CloseFailed,
    /// The peer disconnected or the connection broke.
    Disconnected,
    /// The monitor stopped.
    MonitorStopped,
    /// The handshake failed for an unspecified system reason (value: errno).
    HandshakeFailedNoDetail,
    /// The handshake (including authentication) succeeded.
    HandshakeSucceeded,
    /// The handshake failed on a protocol error (value: a [`protocol_error`] code).
    HandshakeFailedProtocol,
    /// Authentication was refused (value: the ZAP status code, such as 400).
    HandshakeFailedAuth,
    /// An event this binding does not name.
    Other(u16),
}

impl EventKind {
    fn from_code(code: u16) -> Self {
        match code {
            0x0001 => EventKind::Connected,
            0x0002 => EventKind::ConnectDelayed,
            0x0004 => EventKind::ConnectRetried,
            0x0008 => EventKind::Listening,
            0x0010 => EventKind::BindFailed,
            0x0020 => EventKind::Accepted,
            0x0040 => EventKind::AcceptFailed,
            0x0080 => EventKind::Closed,
            0x0100 => EventKind::CloseFailed,
            0x0200 => EventKind::Disconnected,
            0x0400 => EventKind::MonitorStopped,
            0x0800 => EventKind::HandshakeFailedNoDetail,
            0x1000 => EventKind::HandshakeSucceeded,
            0x2000 => EventKind::HandshakeFailedProtocol,
            0x4000 => EventKind::HandshakeFailedAuth,
            other => EventKind::Other(other),
        }
    }
}

/// Values of [`EventKind::HandshakeFailedProtocol`] events (`ZMQ_PROTOCOL_ERROR_*`).
pub mod protocol_error {
    /// The peer sent something the ZMTP state machine did not expect.
    pub const ZMTP_UNEXPECTED_COMMAND: u32 = 0x1000_0001;
    /// A CURVE box failed to open: wrong keys, or tampering.
    pub const ZMTP_CRYPTOGRAPHIC: u32 = 0x1100_0001;
    /// The two ends run different security mechanisms (NULL vs CURVE).
    pub const ZMTP_MECHANISM_MISMATCH: u32 = 0x1100_0002;
    /// The ZAP handler's reply was malformed.
    pub const ZAP_MALFORMED_REPLY: u32 = 0x2000_0001;
}

impl MonitorEvent {
    /// Parses the two frames of a monitor message (libzmq's version-1 format:
    /// a 6-byte frame with the event code and value in native byte order, then
    /// the endpoint). `None` if the frames are not in that format.
    pub fn parse(frames: &[Message]) -> Option<MonitorEvent> {
        let head = frames.first()?.as_bytes();
        let code: [u8; 2] = head.get(0..2)?.try_into().ok()?;
        let value: [u8; 4] = head.get(2..6)?.try_into().ok()?;
        let endpoint = frames
            .get(1)
            .map(|f| String::from_utf8_lossy(f.as_bytes()).into_owned())
            .unwrap_or_default();
        Some(MonitorEvent {
            kind: EventKind::from_code(u16::from_ne_bytes(code)),
            value: u32::from_ne_bytes(value),
            endpoint,
        })
    }
}
