//! Sockets: creation, typed options, bind/connect, send and receive.

use std::ffi::CString;
use std::os::raw::{c_int, c_void};
use std::sync::Arc;
use std::time::Duration;

use super::context::{Context, RawContext};
use super::error::{Error, Result, check};
use super::ffi;
use super::message::Message;

/// The socket types the binding offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketType {
    /// Exclusive pair, used for in-process signalling.
    Pair,
    /// Strict request side of request/reply.
    Req,
    /// Strict reply side of request/reply (the ZAP handler is one).
    Rep,
    /// Asynchronous client: fair-queued input, round-robin output.
    Dealer,
    /// Asynchronous server: every message carries its peer's routing id.
    Router,
    /// Pipeline input.
    Pull,
    /// Pipeline output.
    Push,
    /// Raw TCP, for tests that speak to a node below ZMTP.
    Stream,
}

impl SocketType {
    fn raw(self) -> c_int {
        match self {
            SocketType::Pair => ffi::ZMQ_PAIR,
            SocketType::Req => ffi::ZMQ_REQ,
            SocketType::Rep => ffi::ZMQ_REP,
            SocketType::Dealer => ffi::ZMQ_DEALER,
            SocketType::Router => ffi::ZMQ_ROUTER,
            SocketType::Pull => ffi::ZMQ_PULL,
            SocketType::Push => ffi::ZMQ_PUSH,
            SocketType::Stream => ffi::ZMQ_STREAM,
        }
    }
}

/// Flags of a send: more frames follow, and/or do not block.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendFlags(c_int);

impl SendFlags {
    /// Block until the message is queued.
    pub const NONE: SendFlags = SendFlags(0);
    /// Fail with `EAGAIN` instead of blocking.
    pub const DONTWAIT: SendFlags = SendFlags(ffi::ZMQ_DONTWAIT);
    /// More frames of the same message follow.
    pub const MORE: SendFlags = SendFlags(ffi::ZMQ_SNDMORE);
}

impl std::ops::BitOr for SendFlags {
    type Output = SendFlags;
    fn bitor(self, rhs: SendFlags) -> SendFlags {
        SendFlags(self.0 | rhs.0)
    }
}

/// A libzmq socket. Closed on drop.
///
/// `Send` but not `Sync`: a socket may move to another thread, but only one
/// thread may use it at a time, as libzmq requires.
pub struct Socket {
    ptr: *mut c_void,
    // Keeps the context alive (and un-terminated) while the socket is open.
    _ctx: Arc<RawContext>,
}

// SAFETY: libzmq allows a socket to migrate between threads provided a full
// memory barrier separates the uses; moving a value between threads in Rust
// (channel, spawn, join) implies one. `Socket` is not `Sync`, so it is never
// used from two threads at once.
unsafe impl Send for Socket {}

impl Drop for Socket {
    fn drop(&mut self) {
        // SAFETY: `ptr` is a live socket, closed exactly once, by its owner.
        unsafe { ffi::zmq_close(self.ptr) };
    }
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Socket({:p})", self.ptr)
    }
}

fn c_string(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::invalid_argument())
}

fn millis(d: Duration) -> c_int {
    c_int::try_from(d.as_millis()).unwrap_or(c_int::MAX)
}

impl Socket {
    pub(crate) fn new(ctx: &Context, kind: SocketType) -> Result<Self> {
        // SAFETY: the context pointer is live for as long as `ctx.inner`.
        let ptr = unsafe { ffi::zmq_socket(ctx.inner.ptr, kind.raw()) };
        if ptr.is_null() {
            return Err(Error::last());
        }
        Ok(Socket {
            ptr,
            _ctx: ctx.inner.clone(),
        })
    }

    /// The raw pointer, for building poll items.
    pub(crate) fn as_ptr(&self) -> *mut c_void {
        self.ptr
    }

    /// Binds to an endpoint such as `tcp://127.0.0.1:*`, `ipc://path`, `inproc://name`.
    pub fn bind(&self, endpoint: &str) -> Result<()> {
        let c = c_string(endpoint)?;
        // SAFETY: live socket; `c` is NUL-terminated and outlives the call.
        check(unsafe { ffi::zmq_bind(self.ptr, c.as_ptr()) }).map(|_| ())
    }

    /// Connects to an endpoint; libzmq connects (and reconnects) in the background.
    pub fn connect(&self, endpoint: &str) -> Result<()> {
        let c = c_string(endpoint)?;
        // SAFETY: live socket; `c` is NUL-terminated and outlives the call.
        check(unsafe { ffi::zmq_connect(self.ptr, c.as_ptr()) }).map(|_| ())
    }

    /// Undoes a `connect` to the same endpoint string.
    pub fn disconnect(&self, endpoint: &str) -> Result<()> {
        let c = c_string(endpoint)?;
        // SAFETY: live socket; `c` is NUL-terminated and outlives the call.
        check(unsafe { ffi::zmq_disconnect(self.ptr, c.as_ptr()) }).map(|_| ())
    }

    /// Undoes a `bind` to the same endpoint string.
    pub fn unbind(&self, endpoint: &str) -> Result<()> {
        let c = c_string(endpoint)?;
        // SAFETY: live socket; `c` is NUL-terminated and outlives the call.
        check(unsafe { ffi::zmq_unbind(self.ptr, c.as_ptr()) }).map(|_| ())
    }

    /// Starts a monitor publishing this socket's events on a PAIR bound at
    /// `inproc_endpoint`; connect a [`SocketType::Pair`] to it and read
    /// `MonitorEvent`s. `events` is a mask of `ZMQ_EVENT_*` bits
    /// (`0xFFFF` for all).
    pub fn monitor(&self, inproc_endpoint: &str, events: u16) -> Result<()> {
        let c = c_string(inproc_endpoint)?;
        // SAFETY: live socket; `c` is NUL-terminated and outlives the call.
        check(unsafe { ffi::zmq_socket_monitor(self.ptr, c.as_ptr(), c_int::from(events)) })
            .map(|_| ())
    }

    fn set_bytes(&self, option: c_int, value: &[u8]) -> Result<()> {
        // SAFETY: live socket; the pointer and length describe `value`, which
        // libzmq copies before returning.
        check(unsafe { ffi::zmq_setsockopt(self.ptr, option, value.as_ptr().cast(), value.len()) })
            .map(|_| ())
    }

    fn set_int(&self, option: c_int, value: c_int) -> Result<()> {
        self.set_bytes(option, &value.to_ne_bytes())
    }

    fn get_int(&self, option: c_int) -> Result<c_int> {
        let mut value: c_int = 0;
        let mut len = std::mem::size_of::<c_int>();
        // SAFETY: live socket; `value` is writable for `len` bytes and `len` is
        // a valid in/out length.
        check(unsafe {
            ffi::zmq_getsockopt(
                self.ptr,
                option,
                (&mut value as *mut c_int).cast(),
                &mut len,
            )
        })?;
        Ok(value)
    }

    /// Sets the routing id this socket presents to the peers it connects to (1..=255 bytes).
    pub fn set_routing_id(&self, id: &[u8]) -> Result<()> {
        self.set_bytes(ffi::ZMQ_ROUTING_ID, id)
    }

    /// How long unsent messages are kept after close.
    pub fn set_linger(&self, linger: Duration) -> Result<()> {
        self.set_int(ffi::ZMQ_LINGER, millis(linger))
    }

    /// Outgoing queue limit in messages (0 = none).
    pub fn set_sndhwm(&self, messages: i32) -> Result<()> {
        self.set_int(ffi::ZMQ_SNDHWM, messages)
    }

    /// Incoming queue limit in messages (0 = none).
    pub fn set_rcvhwm(&self, messages: i32) -> Result<()> {
        self.set_int(ffi::ZMQ_RCVHWM, messages)
    }

    /// Kernel send buffer size in bytes (-1 = OS default).
    pub fn set_sndbuf(&self, bytes: i32) -> Result<()> {
        self.set_int(ffi::ZMQ_SNDBUF, bytes)
    }

    /// Kernel receive buffer size in bytes (-1 = OS default).
    pub fn set_rcvbuf(&self, bytes: i32) -> Result<()> {
        self.set_int(ffi::ZMQ_RCVBUF, bytes)
    }

    /// Largest inbound message libzmq accepts; a peer sending more is disconnected.
    pub fn set_maxmsgsize(&self, bytes: i64) -> Result<()> {
        self.set_bytes(ffi::ZMQ_MAXMSGSIZE, &bytes.to_ne_bytes())
    }

    /// ROUTER: fail sends to unknown routing ids with `EHOSTUNREACH` instead of dropping.
    pub fn set_router_mandatory(&self, on: bool) -> Result<()> {
        self.set_int(ffi::ZMQ_ROUTER_MANDATORY, c_int::from(on))
    }

    /// ROUTER: a new connection with an existing routing id takes it over.
    pub fn set_router_handover(&self, on: bool) -> Result<()> {
        self.set_int(ffi::ZMQ_ROUTER_HANDOVER, c_int::from(on))
    }

    /// Queue messages only to completed connections.
    pub fn set_immediate(&self, on: bool) -> Result<()> {
        self.set_int(ffi::ZMQ_IMMEDIATE, c_int::from(on))
    }

    /// Accept IPv6 as well as IPv4 on tcp endpoints.
    pub fn set_ipv6(&self, on: bool) -> Result<()> {
        self.set_int(ffi::ZMQ_IPV6, c_int::from(on))
    }

    /// Initial interval between libzmq's own reconnection attempts.
    pub fn set_reconnect_ivl(&self, ivl: Duration) -> Result<()> {
        self.set_int(ffi::ZMQ_RECONNECT_IVL, millis(ivl))
    }

    /// Cap of libzmq's own exponential reconnection interval (0 = no growth).
    pub fn set_reconnect_ivl_max(&self, ivl: Duration) -> Result<()> {
        self.set_int(ffi::ZMQ_RECONNECT_IVL_MAX, millis(ivl))
    }

    /// Longest time a ZMTP handshake (including CURVE and ZAP) may take.
    pub fn set_handshake_ivl(&self, ivl: Duration) -> Result<()> {
        self.set_int(ffi::ZMQ_HANDSHAKE_IVL, millis(ivl))
    }

    /// Longest time a TCP connect may take before libzmq retries.
    pub fn set_connect_timeout(&self, timeout: Duration) -> Result<()> {
        self.set_int(ffi::ZMQ_CONNECT_TIMEOUT, millis(timeout))
    }

    /// ZMTP-level heartbeats: interval, and silence after which libzmq drops the connection.
    pub fn set_zmtp_heartbeat(&self, interval: Duration, timeout: Duration) -> Result<()> {
        self.set_int(ffi::ZMQ_HEARTBEAT_IVL, millis(interval))?;
        self.set_int(ffi::ZMQ_HEARTBEAT_TIMEOUT, millis(timeout))?;
        // The time-to-live the peer should apply, in deciseconds, capped by ZMTP.
        let ttl = c_int::try_from(timeout.as_millis() / 100 * 100).unwrap_or(6_553_500);
        self.set_int(ffi::ZMQ_HEARTBEAT_TTL, ttl.min(6_553_500))
    }

    /// CURVE: act as server (this socket holds the long-term secret key).
    pub fn set_curve_server(&self, on: bool) -> Result<()> {
        self.set_int(ffi::ZMQ_CURVE_SERVER, c_int::from(on))
    }

    /// CURVE: this socket's long-term public key (32 bytes).
    pub fn set_curve_publickey(&self, key: &[u8; 32]) -> Result<()> {
        self.set_bytes(ffi::ZMQ_CURVE_PUBLICKEY, key)
    }

    /// CURVE: this socket's long-term secret key (32 bytes).
    pub fn set_curve_secretkey(&self, key: &[u8; 32]) -> Result<()> {
        self.set_bytes(ffi::ZMQ_CURVE_SECRETKEY, key)
    }

    /// CURVE client: the public key the server must prove it holds (32 bytes).
    pub fn set_curve_serverkey(&self, key: &[u8; 32]) -> Result<()> {
        self.set_bytes(ffi::ZMQ_CURVE_SERVERKEY, key)
    }

    /// The ZAP domain; with CURVE a ZAP handler is consulted on every handshake.
    pub fn set_zap_domain(&self, domain: &str) -> Result<()> {
        self.set_bytes(ffi::ZMQ_ZAP_DOMAIN, domain.as_bytes())
    }

    /// The security mechanism in use: 0 NULL, 1 PLAIN, 2 CURVE.
    pub fn mechanism(&self) -> Result<i32> {
        self.get_int(ffi::ZMQ_MECHANISM)
    }

    /// The endpoint of the last bind, with a wildcard port resolved.
    pub fn last_endpoint(&self) -> Result<String> {
        let mut buf = [0u8; 1024];
        let mut len = buf.len();
        // SAFETY: live socket; `buf` is writable for `len` bytes and `len` is a
        // valid in/out length.
        check(unsafe {
            ffi::zmq_getsockopt(
                self.ptr,
                ffi::ZMQ_LAST_ENDPOINT,
                buf.as_mut_ptr().cast(),
                &mut len,
            )
        })?;
        let text = &buf[..len.min(buf.len())];
        let text = text.split(|&b| b == 0).next().unwrap_or_default();
        Ok(String::from_utf8_lossy(text).into_owned())
    }

    /// Sends one frame, copied into libzmq.
    pub fn send(&self, data: &[u8], flags: SendFlags) -> Result<()> {
        loop {
            // SAFETY: live socket; the pointer and length describe `data`, which
            // libzmq copies before returning.
            let rc = unsafe { ffi::zmq_send(self.ptr, data.as_ptr().cast(), data.len(), flags.0) };
            match check(rc) {
                Ok(_) => return Ok(()),
                Err(e) if e.is_interrupted() => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends one frame, handing the message over to libzmq without a copy.
    ///
    /// On failure the message is returned with the error so it can be retried.
    pub fn send_msg(
        &self,
        mut msg: Message,
        flags: SendFlags,
    ) -> std::result::Result<(), (Error, Message)> {
        loop {
            // SAFETY: live socket and an initialised message; on success libzmq
            // takes the content and leaves `msg` empty (closing it is then a no-op).
            let rc = unsafe { ffi::zmq_msg_send(msg.as_mut_ptr(), self.ptr, flags.0) };
            match check(rc) {
                Ok(_) => return Ok(()),
                Err(e) if e.is_interrupted() => continue,
                Err(e) => return Err((e, msg)),
            }
        }
    }

    /// Receives one frame into `msg`, replacing what it held.
    pub fn recv(&self, msg: &mut Message, dontwait: bool) -> Result<()> {
        let flags = if dontwait { ffi::ZMQ_DONTWAIT } else { 0 };
        loop {
            // SAFETY: live socket and an initialised message, which libzmq closes
            // and refills.
            let rc = unsafe { ffi::zmq_msg_recv(msg.as_mut_ptr(), self.ptr, flags) };
            match check(rc) {
                Ok(_) => return Ok(()),
                Err(e) if e.is_interrupted() => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Receives every frame of one multipart message (blocking unless `dontwait`).
    ///
    /// At most `max_frames` frames are kept; the rest of the message is read and
    /// discarded so a message with absurdly many frames can never wedge the
    /// caller. Returns the kept frames and the total number of frames.
    pub fn recv_multipart(
        &self,
        dontwait: bool,
        max_frames: usize,
    ) -> Result<(Vec<Message>, usize)> {
        let mut frames = Vec::with_capacity(max_frames.min(4));
        let mut total = 0usize;
        let mut msg = Message::new();
        self.recv(&mut msg, dontwait)?;
        loop {
            total += 1;
            let more = msg.more();
            if frames.len() < max_frames {
                frames.push(std::mem::take(&mut msg));
            }
            if !more {
                return Ok((frames, total));
            }
            // The rest of a multipart message is always available at once.
            self.recv(&mut msg, false)?;
        }
    }
}
