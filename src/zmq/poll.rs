//! `zmq_poll` over sockets and plain file descriptors.

use std::marker::PhantomData;
use std::os::fd::RawFd;
use std::time::Duration;

use super::error::{Error, Result};
use super::ffi;
use super::socket::Socket;

/// One entry of a poll set: a socket or a file descriptor, the events of
/// interest, and after [`poll`] the events that are ready.
#[repr(transparent)]
pub struct PollItem<'a> {
    raw: ffi::zmq_pollitem_t,
    _socket: PhantomData<&'a Socket>,
}

impl<'a> PollItem<'a> {
    /// Waits for `socket` to become readable.
    pub fn readable(socket: &'a Socket) -> Self {
        Self::socket(socket, ffi::ZMQ_POLLIN)
    }

    /// Waits for `socket` to accept a message.
    pub fn writable(socket: &'a Socket) -> Self {
        Self::socket(socket, ffi::ZMQ_POLLOUT)
    }

    fn socket(socket: &'a Socket, events: i16) -> Self {
        PollItem {
            raw: ffi::zmq_pollitem_t {
                socket: socket.as_ptr(),
                fd: 0,
                events,
                revents: 0,
            },
            _socket: PhantomData,
        }
    }

    /// Waits for a plain file descriptor (a pipe, a Unix socket) to become readable.
    ///
    /// The descriptor must stay open for as long as the item is polled.
    pub fn fd_readable(fd: RawFd) -> Self {
        PollItem {
            raw: ffi::zmq_pollitem_t {
                socket: std::ptr::null_mut(),
                fd,
                events: ffi::ZMQ_POLLIN,
                revents: 0,
            },
            _socket: PhantomData,
        }
    }

    /// Whether the item was readable when `poll` returned.
    pub fn is_readable(&self) -> bool {
        self.raw.revents & ffi::ZMQ_POLLIN != 0
    }

    /// Whether the item was writable when `poll` returned.
    pub fn is_writable(&self) -> bool {
        self.raw.revents & ffi::ZMQ_POLLOUT != 0
    }

    /// Whether the file descriptor reported an error.
    pub fn is_error(&self) -> bool {
        self.raw.revents & ffi::ZMQ_POLLERR != 0
    }
}

/// Waits until at least one item is ready or `timeout` passes (`None`: forever).
///
/// Timeouts are rounded up to whole milliseconds, so a wait never ends early.
/// Returns the number of ready items; an interrupted wait returns 0.
pub fn poll(items: &mut [PollItem<'_>], timeout: Option<Duration>) -> Result<usize> {
    let timeout_ms: std::os::raw::c_long = match timeout {
        None => -1,
        Some(d) => {
            let ms = d.as_nanos().div_ceil(1_000_000);
            std::os::raw::c_long::try_from(ms).unwrap_or(std::os::raw::c_long::MAX)
        }
    };
    let n = std::os::raw::c_int::try_from(items.len()).map_err(|_| Error::invalid_argument())?;
    // SAFETY: `PollItem` is `repr(transparent)` over `zmq_pollitem_t`, so the
    // slice is a valid array of `n` items; every socket pointer is borrowed
    // from a live `Socket` for the lifetime 'a, and fds are the caller's.
    let rc = unsafe { ffi::zmq_poll(items.as_mut_ptr().cast(), n, timeout_ms) };
    if rc < 0 {
        let e = Error::last();
        if e.is_interrupted() {
            return Ok(0);
        }
        return Err(e);
    }
    Ok(usize::try_from(rc).unwrap_or(0))
}
