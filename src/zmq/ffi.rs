//! Raw declarations of the parts of libzmq 4.3.5's C API that the binding uses.
//!
//! Written by hand from `zmq.h` (no bindgen, so no libclang on the build
//! machine). Nothing outside `crate::zmq` may use this module.

#![allow(non_camel_case_types)]

use std::os::raw::{c_char, c_int, c_long, c_short, c_void};

/// `zmq_msg_t`: 64 opaque bytes, pointer-aligned on the platforms we build for.
#[repr(C, align(8))]
pub struct zmq_msg_t {
    _opaque: [u8; 64],
}

impl zmq_msg_t {
    /// An all-zero value, to be initialised by `zmq_msg_init*` before use.
    pub const fn zeroed() -> Self {
        zmq_msg_t { _opaque: [0; 64] }
    }
}

/// `zmq_pollitem_t` as laid out on Unix (`zmq_fd_t` is `int`).
#[repr(C)]
pub struct zmq_pollitem_t {
    pub socket: *mut c_void,
    pub fd: c_int,
    pub events: c_short,
    pub revents: c_short,
}

/// Signature of the deallocation callback of `zmq_msg_init_data`.
pub type zmq_free_fn = unsafe extern "C" fn(data: *mut c_void, hint: *mut c_void);

pub const ZMQ_HAUSNUMERO: c_int = 156_384_712;
pub const ETERM: c_int = ZMQ_HAUSNUMERO + 53;
pub const EAGAIN: c_int = 11;
pub const EINTR: c_int = 4;
pub const EHOSTUNREACH: c_int = 113;

pub const ZMQ_IO_THREADS: c_int = 1;
pub const ZMQ_MAX_SOCKETS: c_int = 2;
pub const ZMQ_BLOCKY: c_int = 70;

pub const ZMQ_PAIR: c_int = 0;
pub const ZMQ_REQ: c_int = 3;
pub const ZMQ_REP: c_int = 4;
pub const ZMQ_DEALER: c_int = 5;
pub const ZMQ_ROUTER: c_int = 6;
pub const ZMQ_PULL: c_int = 7;
pub const ZMQ_PUSH: c_int = 8;
pub const ZMQ_STREAM: c_int = 11;

pub const ZMQ_ROUTING_ID: c_int = 5;
pub const ZMQ_SNDBUF: c_int = 11;
pub const ZMQ_RCVBUF: c_int = 12;
pub const ZMQ_LINGER: c_int = 17;
pub const ZMQ_RECONNECT_IVL: c_int = 18;
pub const ZMQ_RECONNECT_IVL_MAX: c_int = 21;
pub const ZMQ_MAXMSGSIZE: c_int = 22;
pub const ZMQ_SNDHWM: c_int = 23;
pub const ZMQ_RCVHWM: c_int = 24;
pub const ZMQ_LAST_ENDPOINT: c_int = 32;
pub const ZMQ_ROUTER_MANDATORY: c_int = 33;
pub const ZMQ_IMMEDIATE: c_int = 39;
pub const ZMQ_IPV6: c_int = 42;
pub const ZMQ_MECHANISM: c_int = 43;
pub const ZMQ_CURVE_SERVER: c_int = 47;
pub const ZMQ_CURVE_PUBLICKEY: c_int = 48;
pub const ZMQ_CURVE_SECRETKEY: c_int = 49;
pub const ZMQ_CURVE_SERVERKEY: c_int = 50;
pub const ZMQ_ZAP_DOMAIN: c_int = 55;
pub const ZMQ_ROUTER_HANDOVER: c_int = 56;
pub const ZMQ_HANDSHAKE_IVL: c_int = 66;
pub const ZMQ_HEARTBEAT_IVL: c_int = 75;
pub const ZMQ_HEARTBEAT_TTL: c_int = 76;
pub const ZMQ_HEARTBEAT_TIMEOUT: c_int = 77;
pub const ZMQ_CONNECT_TIMEOUT: c_int = 79;

pub const ZMQ_DONTWAIT: c_int = 1;
pub const ZMQ_SNDMORE: c_int = 2;

pub const ZMQ_POLLIN: c_short = 1;
pub const ZMQ_POLLOUT: c_short = 2;
pub const ZMQ_POLLERR: c_short = 4;

#[link(name = "zmq", kind = "static")]
unsafe extern "C" {
    pub fn zmq_errno() -> c_int;
    pub fn zmq_strerror(errnum: c_int) -> *const c_char;
    pub fn zmq_version(major: *mut c_int, minor: *mut c_int, patch: *mut c_int);
    pub fn zmq_has(capability: *const c_char) -> c_int;

    pub fn zmq_ctx_new() -> *mut c_void;
    pub fn zmq_ctx_term(context: *mut c_void) -> c_int;
    pub fn zmq_ctx_set(context: *mut c_void, option: c_int, optval: c_int) -> c_int;

    pub fn zmq_msg_init(msg: *mut zmq_msg_t) -> c_int;
    pub fn zmq_msg_init_size(msg: *mut zmq_msg_t, size: usize) -> c_int;
    pub fn zmq_msg_init_data(
        msg: *mut zmq_msg_t,
        data: *mut c_void,
        size: usize,
        ffn: Option<zmq_free_fn>,
        hint: *mut c_void,
    ) -> c_int;
    pub fn zmq_msg_send(msg: *mut zmq_msg_t, s: *mut c_void, flags: c_int) -> c_int;
    pub fn zmq_msg_recv(msg: *mut zmq_msg_t, s: *mut c_void, flags: c_int) -> c_int;
    pub fn zmq_msg_close(msg: *mut zmq_msg_t) -> c_int;
    pub fn zmq_msg_data(msg: *mut zmq_msg_t) -> *mut c_void;
    pub fn zmq_msg_size(msg: *const zmq_msg_t) -> usize;
    pub fn zmq_msg_more(msg: *const zmq_msg_t) -> c_int;
    pub fn zmq_msg_gets(msg: *const zmq_msg_t, property: *const c_char) -> *const c_char;

    pub fn zmq_socket(context: *mut c_void, kind: c_int) -> *mut c_void;
    pub fn zmq_close(s: *mut c_void) -> c_int;
    pub fn zmq_setsockopt(
        s: *mut c_void,
        option: c_int,
        optval: *const c_void,
        optvallen: usize,
    ) -> c_int;
    pub fn zmq_getsockopt(
        s: *mut c_void,
        option: c_int,
        optval: *mut c_void,
        optvallen: *mut usize,
    ) -> c_int;
    pub fn zmq_bind(s: *mut c_void, addr: *const c_char) -> c_int;
    pub fn zmq_connect(s: *mut c_void, addr: *const c_char) -> c_int;
    pub fn zmq_unbind(s: *mut c_void, addr: *const c_char) -> c_int;
    pub fn zmq_disconnect(s: *mut c_void, addr: *const c_char) -> c_int;
    pub fn zmq_send(s: *mut c_void, buf: *const c_void, len: usize, flags: c_int) -> c_int;
    pub fn zmq_socket_monitor(s: *mut c_void, addr: *const c_char, events: c_int) -> c_int;

    pub fn zmq_poll(items: *mut zmq_pollitem_t, nitems: c_int, timeout: c_long) -> c_int;

    pub fn zmq_z85_encode(dest: *mut c_char, data: *const u8, size: usize) -> *mut c_char;
    pub fn zmq_z85_decode(dest: *mut u8, string: *const c_char) -> *mut u8;
    pub fn zmq_curve_keypair(z85_public_key: *mut c_char, z85_secret_key: *mut c_char) -> c_int;
    pub fn zmq_curve_public(z85_public_key: *mut c_char, z85_secret_key: *const c_char) -> c_int;
}
