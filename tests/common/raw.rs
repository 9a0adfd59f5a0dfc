//! A peer made of bare ZeroMQ sockets that speaks the wire protocol from
//! `PROTOCOL.md` by hand: what a hostile or foreign implementation sends.

use std::time::{Duration, Instant};

use bilateral::testkit::zmq::{Context, PollItem, SendFlags, Socket, SocketType};

use super::PATIENCE;

/// Message kinds (PROTOCOL.md §3.4).
pub const JOIN: u8 = 1;
pub const WELCOME: u8 = 2;
pub const REJECT: u8 = 3;
pub const PING: u8 = 4;
pub const REQUEST: u8 = 7;
pub const REPLY: u8 = 8;
pub const CAST: u8 = 9;
pub const FRAGMENT: u8 = 14;

/// A DEALER with routing id `id` (none: libzmq picks one), connected to `endpoint`.
pub fn dealer(ctx: &Context, id: Option<&[u8]>, endpoint: &str) -> Socket {
    let s = ctx.socket(SocketType::Dealer).unwrap();
    if let Some(id) = id {
        s.set_routing_id(id).unwrap();
    }
    s.set_linger(Duration::from_millis(500)).unwrap();
    s.connect(endpoint).unwrap();
    s
}

/// Sends one multipart message, blocking.
pub fn send_parts(s: &Socket, parts: &[&[u8]]) {
    for (i, p) in parts.iter().enumerate() {
        let flags = if i + 1 < parts.len() {
            SendFlags::MORE
        } else {
            SendFlags::NONE
        };
        s.send(p, flags).unwrap();
    }
}

/// Sends one frame, waiting for room until `deadline`; whether it went.
pub fn send_by(s: &Socket, frame: &[u8], deadline: Instant) -> bool {
    loop {
        match s.send(frame, SendFlags::DONTWAIT) {
            Ok(()) => return true,
            Err(e) if e.is_again() => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return false;
                }
                let mut items = [PollItem::writable(s)];
                let _ = bilateral::testkit::zmq::poll(
                    &mut items,
                    Some(left.min(Duration::from_millis(50))),
                );
            }
            Err(e) => panic!("send failed: {e}"),
        }
    }
}

/// A protocol frame: version 1, `kind`, the sender's incarnation, `body`.
pub fn frame(kind: u8, incarnation: u64, body: &[u8]) -> Vec<u8> {
    let mut f = vec![1, kind];
    f.extend_from_slice(&incarnation.to_be_bytes());
    f.extend_from_slice(body);
    f
}

/// A JOIN of `name` (incarnation `incarnation`) to `target` on network "test".
pub fn join_frame(incarnation: u64, name: &str, target: &str) -> Vec<u8> {
    let mut body = vec![1, 1, 0]; // versions 1..=1, security NULL
    body.extend_from_slice(&1000u32.to_be_bytes());
    for field in ["test", name, target] {
        body.push(field.len() as u8);
        body.extend_from_slice(field.as_bytes());
    }
    frame(JOIN, incarnation, &body)
}

/// A REQUEST of `method` with MessagePack `args`.
pub fn request_frame(
    incarnation: u64,
    id: u64,
    timeout_ms: u32,
    method: &str,
    args: &[u8],
) -> Vec<u8> {
    let mut body = id.to_be_bytes().to_vec();
    body.extend_from_slice(&timeout_ms.to_be_bytes());
    body.push(method.len() as u8);
    body.extend_from_slice(method.as_bytes());
    body.extend_from_slice(args);
    frame(REQUEST, incarnation, &body)
}

/// A FRAGMENT of transfer `id`: `payload` at `offset` of a `total`-byte frame.
pub fn fragment_frame(
    incarnation: u64,
    id: u64,
    total: u64,
    offset: u64,
    payload: &[u8],
) -> Vec<u8> {
    let mut body = id.to_be_bytes().to_vec();
    body.extend_from_slice(&total.to_be_bytes());
    body.extend_from_slice(&offset.to_be_bytes());
    body.extend_from_slice(payload);
    frame(FRAGMENT, incarnation, &body)
}

/// `bytes` as a MessagePack bin.
pub fn msgpack_bin(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![0xc6];
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
    out
}

/// The next message on `socket` within `PATIENCE`: the kind byte of its frame.
pub fn next_kind(socket: &Socket) -> Option<u8> {
    next_frame(socket, PATIENCE).and_then(|f| f.get(1).copied())
}

/// Whether `frame` is a CAST to a built-in service's method
/// (`bilateral.…`, PROTOCOL.md §7.6): what a raw peer that runs no
/// service ignores, as a node that does not run the service does.
pub fn is_service_cast(frame: &[u8]) -> bool {
    frame.get(1) == Some(&9)
        && frame.get(10).is_some_and(|&n| {
            frame
                .get(11..11 + n as usize)
                .is_some_and(|m| m.starts_with(b"bilateral."))
        })
}

/// The next frame on `socket` within `timeout`, passing over casts to the
/// built-in services (the registry greets every new session).
pub fn next_frame(socket: &Socket, timeout: Duration) -> Option<Vec<u8>> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let mut items = [PollItem::readable(socket)];
        bilateral::testkit::zmq::poll(&mut items, Some(left)).ok()?;
        let (frames, _) = socket.recv_multipart(true, 4).ok()?;
        let frame = frames.first().map(|f| f.as_bytes().to_vec())?;
        if !is_service_cast(&frame) {
            return Some(frame);
        }
    }
}

/// A raw DEALER named `name` joined to the node `target` at `endpoint`.
pub fn joined(ctx: &Context, name: &str, incarnation: u64, target: &str, endpoint: &str) -> Socket {
    let s = dealer(ctx, Some(name.as_bytes()), endpoint);
    send_parts(&s, &[&join_frame(incarnation, name, target)]);
    assert_eq!(next_kind(&s), Some(WELCOME), "{name} is welcome");
    s
}
