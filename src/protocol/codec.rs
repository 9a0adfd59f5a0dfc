//! Binary encoding of messages, and decoding of untrusted frames.
//!
//! Layout (all integers big-endian), detailed in `PROTOCOL.md`:
//!
//! ```text
//! 0      1        2             10
//! +------+--------+-------------+----------------------+
//! | wire | kind   | incarnation | payload (per kind)   |
//! | 0x01 | 1..=16 | u64         |                      |
//! +------+--------+-------------+----------------------+
//! ```

use super::message::*;
use super::{DATA_HEADER_LEN, FRAGMENT_HEADER_LEN, HEADER_LEN, WIRE_VERSION};

const JOIN: u8 = 1;
const WELCOME: u8 = 2;
const REJECT: u8 = 3;
const PING: u8 = 4;
const PONG: u8 = 5;
const PART: u8 = 6;
const REQUEST: u8 = 7;
const REPLY: u8 = 8;
const CAST: u8 = 9;
const OPEN: u8 = 10;
const DATA: u8 = 11;
const STATUS: u8 = 12;
const RESET: u8 = 13;
const FRAGMENT: u8 = 14;
const MARK: u8 = 15;
const ACK: u8 = 16;

/// Stream frames: the sender opened the stream.
const FROM_OPENER: u8 = 0x01;
/// STATUS: the sender finished writing.
const FIN: u8 = 0x02;
/// STATUS: the sender reads no more.
const STOP: u8 = 0x04;
/// STATUS: the sender asks for a STATUS back.
const PROBE: u8 = 0x08;

/// Why a frame could not be decoded. Every variant means "drop and count".
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than its fixed fields say it must be.
    #[error("frame truncated")]
    Truncated,
    /// The first byte is not a framing version this node speaks.
    #[error("unknown wire version {0}")]
    UnknownVersion(u8),
    /// The second byte is not a known message kind.
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
    /// A text field is not UTF-8.
    #[error("text field is not UTF-8")]
    NotUtf8,
    /// A field holds a value the protocol forbids (an empty method name).
    #[error("invalid field value")]
    InvalidField,
}

/// Decodes one frame. Never panics; borrows strings and payloads from `frame`.
pub fn decode(frame: &[u8]) -> Result<Envelope<'_>, DecodeError> {
    let mut r = Reader { buf: frame };
    let version = r.u8()?;
    if version != WIRE_VERSION {
        return Err(DecodeError::UnknownVersion(version));
    }
    let kind = r.u8()?;
    let incarnation = r.u64()?;
    let message = match kind {
        JOIN => {
            // Versions and security are checked by the listener, which
            // answers a JOIN it cannot accept instead of dropping it.
            let min_version = r.u8()?;
            let max_version = r.u8()?;
            let security = r.u8()?;
            let heartbeat_ms = r.u32()?;
            let network = r.str8()?;
            let name = r.str8()?;
            let target = r.str8()?;
            Message::Join(Join {
                min_version,
                max_version,
                security,
                heartbeat_ms,
                network,
                name,
                target,
            })
        }
        WELCOME => Message::Welcome(Welcome {
            version: r.u8()?,
            heartbeat_ms: r.u32()?,
            joiner_incarnation: r.u64()?,
            name: r.str8()?,
        }),
        REJECT => Message::Reject(Reject {
            code: RejectCode::from_code(r.u8()?),
            your_incarnation: r.u64()?,
            min_version: r.u8()?,
            max_version: r.u8()?,
            detail: r.str16()?,
        }),
        PING => Message::Ping { nonce: r.u64()? },
        PONG => Message::Pong { nonce: r.u64()? },
        PART => Message::Part(PartReason::from_code(r.u8()?)),
        REQUEST => {
            let request_id = r.u64()?;
            let timeout_ms = r.u32()?;
            let method = r.method()?;
            Message::Request(Request {
                request_id,
                timeout_ms,
                method,
                args: r.rest(),
            })
        }
        REPLY => Message::Reply(Reply {
            request_id: r.u64()?,
            status: ReplyStatus::from_code(r.u8()?),
            payload: r.rest(),
        }),
        CAST => {
            let method = r.method()?;
            Message::Cast(Cast {
                method,
                args: r.rest(),
            })
        }
        OPEN => {
            let stream_id = r.u64()?;
            let timeout_ms = r.u32()?;
            let window = r.u32()?;
            let service = r.method()?;
            Message::Open(Open {
                stream_id,
                timeout_ms,
                window,
                service,
                init: r.rest(),
            })
        }
        DATA => Message::Data(Data {
            stream_id: r.u64()?,
            from_opener: r.u8()? & FROM_OPENER != 0,
            offset: r.u64()?,
            payload: r.rest(),
        }),
        STATUS => {
            let stream_id = r.u64()?;
            let flags = r.u8()?;
            Message::Status(Status {
                stream_id,
                from_opener: flags & FROM_OPENER != 0,
                sent: r.u64()?,
                limit: r.u64()?,
                fin: flags & FIN != 0,
                stop: flags & STOP != 0,
                probe: flags & PROBE != 0,
            })
        }
        RESET => Message::Reset(Reset {
            stream_id: r.u64()?,
            from_opener: r.u8()? & FROM_OPENER != 0,
            code: ResetCode::from_code(r.u8()?),
            detail: r.str16()?,
        }),
        FRAGMENT => Message::Fragment(Fragment {
            transfer_id: r.u64()?,
            total: r.u64()?,
            offset: r.u64()?,
            payload: r.rest(),
        }),
        MARK => Message::Mark { offset: r.u64()? },
        ACK => Message::Ack { offset: r.u64()? },
        other => return Err(DecodeError::UnknownKind(other)),
    };
    // Bytes after the known fields of a fixed-layout message are ignored, so a
    // later protocol version can append fields without breaking this one.
    Ok(Envelope {
        incarnation,
        message,
    })
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn text(bytes: &'a [u8]) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(bytes).map_err(|_| DecodeError::NotUtf8)
    }

    fn str8(&mut self) -> Result<&'a str, DecodeError> {
        let len = usize::from(self.u8()?);
        Self::text(self.take(len)?)
    }

    fn str16(&mut self) -> Result<&'a str, DecodeError> {
        let len = usize::from(self.u16()?);
        Self::text(self.take(len)?)
    }

    fn method(&mut self) -> Result<&'a str, DecodeError> {
        let method = self.str8()?;
        if method.is_empty() {
            return Err(DecodeError::InvalidField);
        }
        Ok(method)
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
}

impl Message<'_> {
    /// The frame for this message sent by incarnation `incarnation`.
    pub fn encode(&self, incarnation: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.payload_hint());
        self.encode_into(incarnation, &mut out);
        out
    }

    /// The length of this message's frame: exact for the kinds that carry a
    /// payload (REQUEST, REPLY, CAST, OPEN, DATA, FRAGMENT), an estimate
    /// for the small control messages.
    pub fn frame_len(&self) -> usize {
        HEADER_LEN + self.payload_hint()
    }

    fn payload_hint(&self) -> usize {
        match self {
            Message::Request(r) => 13 + r.method.len() + r.args.len(),
            Message::Reply(r) => 9 + r.payload.len(),
            Message::Cast(c) => 1 + c.method.len() + c.args.len(),
            Message::Open(o) => 17 + o.service.len() + o.init.len(),
            Message::Data(d) => DATA_HEADER_LEN - HEADER_LEN + d.payload.len(),
            Message::Fragment(f) => FRAGMENT_HEADER_LEN - HEADER_LEN + f.payload.len(),
            _ => 64,
        }
    }

    /// Appends the frame for this message to `out`.
    pub fn encode_into(&self, incarnation: u64, out: &mut Vec<u8>) {
        out.push(WIRE_VERSION);
        out.push(self.kind());
        out.extend_from_slice(&incarnation.to_be_bytes());
        match self {
            Message::Join(j) => {
                out.extend_from_slice(&[j.min_version, j.max_version, j.security]);
                out.extend_from_slice(&j.heartbeat_ms.to_be_bytes());
                put_str8(out, j.network);
                put_str8(out, j.name);
                put_str8(out, j.target);
            }
            Message::Welcome(w) => {
                out.push(w.version);
                out.extend_from_slice(&w.heartbeat_ms.to_be_bytes());
                out.extend_from_slice(&w.joiner_incarnation.to_be_bytes());
                put_str8(out, w.name);
            }
            Message::Reject(r) => {
                out.push(r.code.code());
                out.extend_from_slice(&r.your_incarnation.to_be_bytes());
                out.extend_from_slice(&[r.min_version, r.max_version]);
                put_str16(out, r.detail);
            }
            Message::Ping { nonce } | Message::Pong { nonce } => {
                out.extend_from_slice(&nonce.to_be_bytes());
            }
            Message::Part(reason) => out.push(reason.code()),
            Message::Request(r) => {
                out.extend_from_slice(&r.request_id.to_be_bytes());
                out.extend_from_slice(&r.timeout_ms.to_be_bytes());
                put_str8(out, r.method);
                out.extend_from_slice(r.args);
            }
            Message::Reply(r) => {
                out.extend_from_slice(&r.request_id.to_be_bytes());
                out.push(r.status.code());
                out.extend_from_slice(r.payload);
            }
            Message::Cast(c) => {
                put_str8(out, c.method);
                out.extend_from_slice(c.args);
            }
            Message::Open(o) => {
                out.extend_from_slice(&o.stream_id.to_be_bytes());
                out.extend_from_slice(&o.timeout_ms.to_be_bytes());
                out.extend_from_slice(&o.window.to_be_bytes());
                put_str8(out, o.service);
                out.extend_from_slice(o.init);
            }
            Message::Data(d) => {
                out.extend_from_slice(&d.stream_id.to_be_bytes());
                out.push(opener_flag(d.from_opener));
                out.extend_from_slice(&d.offset.to_be_bytes());
                out.extend_from_slice(d.payload);
            }
            Message::Status(s) => {
                let mut flags = opener_flag(s.from_opener);
                for (set, bit) in [(s.fin, FIN), (s.stop, STOP), (s.probe, PROBE)] {
                    if set {
                        flags |= bit;
                    }
                }
                out.extend_from_slice(&s.stream_id.to_be_bytes());
                out.push(flags);
                out.extend_from_slice(&s.sent.to_be_bytes());
                out.extend_from_slice(&s.limit.to_be_bytes());
            }
            Message::Reset(r) => {
                out.extend_from_slice(&r.stream_id.to_be_bytes());
                out.push(opener_flag(r.from_opener));
                out.push(r.code.code());
                put_str16(out, r.detail);
            }
            Message::Fragment(f) => {
                out.extend_from_slice(&f.transfer_id.to_be_bytes());
                out.extend_from_slice(&f.total.to_be_bytes());
                out.extend_from_slice(&f.offset.to_be_bytes());
                out.extend_from_slice(f.payload);
            }
            Message::Mark { offset } | Message::Ack { offset } => {
                out.extend_from_slice(&offset.to_be_bytes());
            }
        }
    }

    fn kind(&self) -> u8 {
        match self {
            Message::Join(_) => JOIN,
            Message::Welcome(_) => WELCOME,
            Message::Reject(_) => REJECT,
            Message::Ping { .. } => PING,
            Message::Pong { .. } => PONG,
            Message::Part(_) => PART,
            Message::Request(_) => REQUEST,
            Message::Reply(_) => REPLY,
            Message::Cast(_) => CAST,
            Message::Open(_) => OPEN,
            Message::Data(_) => DATA,
            Message::Status(_) => STATUS,
            Message::Reset(_) => RESET,
            Message::Fragment(_) => FRAGMENT,
            Message::Mark { .. } => MARK,
            Message::Ack { .. } => ACK,
        }
    }
}

/// The longest prefix of `s` that fits in `max` bytes and ends on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn put_str8(out: &mut Vec<u8>, s: &str) {
    // Names and methods are validated to 255 bytes before they get here; the
    // truncation only guards against a caller bug producing a corrupt frame.
    let s = truncate(s, 255);
    out.push(s.len() as u8);
    out.extend_from_slice(s.as_bytes());
}

fn put_str16(out: &mut Vec<u8>, s: &str) {
    let s = truncate(s, usize::from(u16::MAX));
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn opener_flag(from_opener: bool) -> u8 {
    if from_opener { FROM_OPENER } else { 0 }
}

/// Writes the header of a DATA frame into the first [`DATA_HEADER_LEN`]
/// bytes of `frame`, whose remaining bytes are the payload.
///
/// This lets a writer copy its bytes straight into a frame with room left in
/// front, and the core fill in the header once it knows the offset, so the
/// payload is copied once on its way to the socket. Returns `false` (and
/// writes nothing) if `frame` is shorter than the header.
pub fn write_data_header(
    frame: &mut [u8],
    incarnation: u64,
    stream_id: u64,
    from_opener: bool,
    offset: u64,
) -> bool {
    let Some(header) = frame.get_mut(..DATA_HEADER_LEN) else {
        return false;
    };
    header[0] = WIRE_VERSION;
    header[1] = DATA;
    header[2..10].copy_from_slice(&incarnation.to_be_bytes());
    header[10..18].copy_from_slice(&stream_id.to_be_bytes());
    header[18] = opener_flag(from_opener);
    header[18 + 1..DATA_HEADER_LEN].copy_from_slice(&offset.to_be_bytes());
    true
}

/// Rewrites the `timeout_ms` of an encoded REQUEST, for one that waited
/// before it could leave. Returns `false` (and writes nothing) if `frame`
/// is not a REQUEST.
pub fn set_request_timeout(frame: &mut [u8], timeout_ms: u32) -> bool {
    if frame.get(1) != Some(&REQUEST) {
        return false;
    }
    let Some(field) = frame.get_mut(HEADER_LEN + 8..HEADER_LEN + 12) else {
        return false;
    };
    field.copy_from_slice(&timeout_ms.to_be_bytes());
    true
}

/// The request id of an encoded REQUEST from its first bytes (enough of it
/// to read the id, as in the first piece of a fragmented one).
pub fn request_id_of(start: &[u8]) -> Option<u64> {
    match call_id_of(start) {
        Some((CallFrame::Request, id)) => Some(id),
        _ => None,
    }
}

/// Which side of a call a frame (or its first piece) belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallFrame {
    /// A REQUEST: its sender waits for a REPLY.
    Request,
    /// A REPLY: the receiver has a call waiting for it.
    Reply,
}

/// The kind and request id of a REQUEST or REPLY frame from its first bytes
/// alone (both carry the id right after the header), without decoding the
/// rest: what a node needs to answer, or to settle, a call whose frame it
/// will not take whole.
pub fn call_id_of(start: &[u8]) -> Option<(CallFrame, u64)> {
    if start.first() != Some(&WIRE_VERSION) {
        return None;
    }
    let kind = match *start.get(1)? {
        REQUEST => CallFrame::Request,
        REPLY => CallFrame::Reply,
        _ => return None,
    };
    let id = start.get(HEADER_LEN..HEADER_LEN + 8)?;
    Some((kind, u64::from_be_bytes(id.try_into().ok()?)))
}
