//! Binary encoding of messages, and decoding of untrusted frames.
//!
//! Layout (all integers big-endian), detailed in `PROTOCOL.md`:
//!
//! ```text
//! 0      1        2             10
//! +------+--------+-------------+----------------------+
//! | wire | kind   | incarnation | payload (per kind)   |
//! | 0x01 | 1..=9  | u64         |                      |
//! +------+--------+-------------+----------------------+
//! ```

use super::message::*;
use super::{HEADER_LEN, WIRE_VERSION};

const JOIN: u8 = 1;
const WELCOME: u8 = 2;
const REJECT: u8 = 3;
const PING: u8 = 4;
const PONG: u8 = 5;
const PART: u8 = 6;
const REQUEST: u8 = 7;
const REPLY: u8 = 8;
const CAST: u8 = 9;

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

    fn payload_hint(&self) -> usize {
        match self {
            Message::Request(r) => 13 + r.method.len() + r.args.len(),
            Message::Reply(r) => 9 + r.payload.len(),
            Message::Cast(c) => 1 + c.method.len() + c.args.len(),
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
                let detail = truncate(r.detail, usize::from(u16::MAX));
                out.extend_from_slice(&(detail.len() as u16).to_be_bytes());
                out.extend_from_slice(detail.as_bytes());
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
